"""Classification metrics at slice and subject level, in numpy (no scikit-learn dependency).

A network sees 2D slices; a subject's age group is decided from all of its slices. Slice-level
probabilities are therefore averaged per subject (:func:`aggregate_by_subject`) and the headline
numbers are subject level (:func:`subject_and_slice_metrics`). Two guards come with them:
``majority_baseline`` (the accuracy of always answering the most frequent class) and
``prediction_spread`` / ``constant_predictions``, which catch a network that gives every held-out
subject the same answer (docs/architecture.md, "Lessons": with batch-norm statistics shifted, every subject got
p = 0.99 and accuracy fell to the class ratio).

Conventions: ``y_true`` holds integer class indices ``0..C-1``; ``prob`` is ``(N, C)`` class
probabilities, or ``(N,)`` for two classes (the probability of class 1). The curves follow
scikit-learn's return conventions so that code written against it reads the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hcp_cam.errors import InputError

__all__ = [
    "classification_metrics",
    "aggregate_by_subject",
    "subject_and_slice_metrics",
    "constant_prediction_warning",
    "roc_curve",
    "precision_recall_curve",
    "roc_auc",
    "average_precision",
    "confusion_matrix",
    "per_class_metrics",
    "summarize_folds",
]


def _as_labels(y_true, n: int | None = None) -> np.ndarray:
    y = np.asarray(y_true.detach().cpu() if hasattr(y_true, "detach") else y_true).reshape(-1)
    if y.size == 0:
        raise InputError("no samples: y_true is empty")
    if not np.all(np.isfinite(y.astype(float))) or not np.all(y.astype(float) == np.round(y.astype(float))):
        raise InputError(f"y_true must hold integer class indices, got {y[:5]}...")
    if n is not None and y.size != n:
        raise InputError(f"y_true has {y.size} entries but prob has {n} rows")
    return y.astype(np.int64)


def _as_prob(prob) -> np.ndarray:
    """``(N,)`` (binary, prob of class 1) or ``(N, C)`` -> ``(N, C)`` float64."""
    p = np.asarray(prob.detach().cpu() if hasattr(prob, "detach") else prob, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"prob must be (N,) or (N, C) with C >= 2, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise InputError("prob holds NaN or Inf")
    return p


def _binary_curve(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative false and true positives at each distinct score, highest score first."""
    y = np.asarray(y_true).reshape(-1).astype(bool)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if y.size != s.size or y.size == 0:
        raise InputError(f"y_true ({y.size}) and score ({s.size}) must be non-empty and of equal length")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    # one point per distinct score: tied samples move the curve together (a diagonal step)
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    return fps, tps, s[last]


def roc_curve(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic of a binary problem (positive class 1).

    Args:
        y_true: ``(N,)`` labels; 1 (or True) is positive, anything else negative.
        score: ``(N,)`` the higher, the more positive (e.g. the probability of class 1).

    Returns:
        ``(fpr, tpr, thresholds)``, each ``(T + 1,)`` for ``T`` distinct scores: the curve starts
        at ``(0, 0)`` with threshold ``inf`` and ends at ``(1, 1)``; thresholds decrease. A rate
        whose denominator is zero (no negatives, or no positives) is NaN.
    """
    fps, tps, thr = _binary_curve(np.asarray(y_true).reshape(-1) == 1, score)
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def precision_recall_curve(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall of a binary problem (positive class 1) at every distinct threshold.

    Args:
        y_true: ``(N,)`` labels; 1 (or True) is positive.
        score: ``(N,)`` the higher, the more positive.

    Returns:
        ``(precision, recall, thresholds)``: ``precision`` and ``recall`` are ``(T + 1,)``,
        ``thresholds`` ``(T,)`` increasing. Recall decreases to the final point ``(recall 0,
        precision 1)``, which has no threshold (scikit-learn's convention). With no positive
        sample, recall is 1 everywhere.
    """
    fps, tps, thr = _binary_curve(np.asarray(y_true).reshape(-1) == 1, score)
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
    recall = np.ones_like(tps) if tps[-1] == 0 else tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def roc_auc(y_true, score) -> float:
    """Area under the ROC curve (binary, positive class 1); ties count one half. NaN with one class."""
    fpr, tpr, _ = roc_curve(y_true, score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(y_true, score) -> float:
    """Average precision: ``sum_n (R_n - R_{n-1}) P_n`` over thresholds (no interpolation).

    Returns NaN when there is no positive sample.
    """
    if not np.any(np.asarray(y_true).reshape(-1) == 1):
        return float("nan")
    precision, recall, _ = precision_recall_curve(y_true, score)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Args:
        y_true: ``(N,)`` integer classes in ``0..n_classes-1``.
        y_pred: ``(N,)`` integer classes in ``0..n_classes-1``.
        n_classes: ``C``.

    Returns:
        ``(C, C)`` int64; row = true class, column = predicted class.

    Raises:
        InputError: a label outside ``0..C-1`` or lengths that differ.
    """
    t, p = _as_labels(y_true), _as_labels(y_pred)
    if t.size != p.size:
        raise InputError(f"y_true ({t.size}) and y_pred ({p.size}) differ in length")
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.min() < 0 or v.max() >= n_classes:
            raise InputError(f"{name} holds labels outside 0..{n_classes - 1}: {sorted(set(v.tolist()))}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(y_true, prob, labels: Sequence[int] | None = None) -> dict[str, float]:
    """Accuracy, ROC AUC, precision, recall, F1, balanced accuracy and the majority baseline.

    Args:
        y_true: ``(N,)`` integer classes.
        prob: ``(N, C)`` class probabilities, or ``(N,)`` the probability of class 1 (two classes).
            The prediction is the arg-max.
        labels: the classes to average over (default ``0..C-1``).

    Returns:
        dict of floats: ``accuracy``; ``roc_auc`` (two classes: of class 1's probability; more:
        one-vs-rest macro mean; NaN when a class is absent from ``y_true``); ``precision``,
        ``recall``, ``f1`` (two classes: positive class 1; more: macro mean; a ratio whose
        denominator is zero counts 0, as in scikit-learn); ``balanced_accuracy`` (mean recall over
        the classes present); ``majority_baseline`` (accuracy of always predicting the most
        frequent class of ``y_true``); ``n`` (number of samples).

    Raises:
        InputError: empty input, mismatched lengths, non-integer labels, NaN probabilities.
    """
    p = _as_prob(prob)
    y = _as_labels(y_true, n=p.shape[0])
    n_classes = p.shape[1]
    labels = list(range(n_classes)) if labels is None else [int(c) for c in labels]
    if y.min() < 0 or y.max() >= n_classes:
        raise InputError(f"y_true holds classes outside 0..{n_classes - 1} (prob has {n_classes} columns)")
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    n_pred, n_true = cm.sum(axis=0).astype(np.float64), cm.sum(axis=1).astype(np.float64)
    prec = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    rec = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    if n_classes == 2:
        auc = roc_auc(y == 1, p[:, 1])
        pick = [1]
    else:
        aucs = [roc_auc(y == c, p[:, c]) for c in labels]
        auc = float("nan") if np.isnan(aucs).any() else float(np.mean(aucs))
        pick = labels
    present = [c for c in labels if n_true[c] > 0]
    return {
        "accuracy": float(tp.sum() / y.size),
        "roc_auc": auc,
        "precision": float(prec[pick].mean()),
        "recall": float(rec[pick].mean()),
        "f1": float(f1[pick].mean()),
        "balanced_accuracy": float(rec[present].mean()),
        "majority_baseline": float(n_true.max() / y.size),
        "n": int(y.size),
    }


def per_class_metrics(y_true, prob, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1, one-vs-rest ROC AUC and support of each class (arg-max predictions).

    Args:
        y_true: ``(N,)`` integer classes.
        prob: ``(N, C)`` class probabilities.
        labels: ``C`` class names.

    Returns:
        ``{name: {"precision", "recall", "f1", "roc_auc", "n"}}`` in class order; AUC NaN for a class
        absent from ``y_true``; a ratio with a zero denominator counts 0.
    """
    p = _as_prob(prob)
    y = _as_labels(y_true, n=p.shape[0])
    if len(labels) != p.shape[1]:
        raise InputError(f"{len(labels)} labels for {p.shape[1]} classes")
    cm = confusion_matrix(y, p.argmax(axis=1), p.shape[1])
    out = {}
    for c, name in enumerate(labels):
        tp, n_pred, n_true = float(cm[c, c]), float(cm[:, c].sum()), float(cm[c].sum())
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_true if n_true else 0.0
        out[str(name)] = {
            "precision": prec,
            "recall": rec,
            "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
            "roc_auc": roc_auc(y == c, p[:, c]) if 0 < n_true < y.size else float("nan"),
            "n": int(n_true),
        }
    return out


def aggregate_by_subject(
    subjects: Sequence[str], y_true, prob, method: str = "mean"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Combine slice-level probabilities into one prediction per subject.

    Args:
        subjects: ``(N,)`` subject id of each slice.
        y_true: ``(N,)`` integer class of each slice (must agree within a subject).
        prob: ``(N, C)`` or ``(N,)`` (probability of class 1) slice probabilities.
        method: ``"mean"`` averages the probabilities; ``"vote"`` gives each class the fraction of
            the subject's slices whose arg-max it is (a tie goes to the lower class index).

    Returns:
        ``(subjects_unique, y_true_subject (S,), prob_subject (S, C))``, subjects in order of first
        appearance.

    Raises:
        InputError: lengths differ, an unknown method, or a subject whose slices carry different
            labels.
    """
    p = _as_prob(prob)
    y = _as_labels(y_true, n=p.shape[0])
    subjects = [str(s) for s in subjects]
    if len(subjects) != y.size:
        raise InputError(f"subjects has {len(subjects)} entries but there are {y.size} slices")
    if method not in ("mean", "vote"):
        raise InputError(f"unknown aggregation method {method!r}; expected 'mean' or 'vote'")
    unique, first, inverse = np.unique(np.asarray(subjects), return_index=True, return_inverse=True)
    order = np.argsort(first)  # first-appearance order, not alphabetical
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    group = rank[inverse]
    n_subj, n_classes = unique.size, p.shape[1]
    values = p if method == "mean" else np.eye(n_classes)[p.argmax(axis=1)]
    sums = np.zeros((n_subj, n_classes))
    np.add.at(sums, group, values)
    counts = np.bincount(group, minlength=n_subj).astype(np.float64)
    y_subject = np.empty(n_subj, dtype=np.int64)
    for g in range(n_subj):
        ys = np.unique(y[group == g])
        if ys.size != 1:
            raise InputError(f"subject {unique[order[g]]!r} has slices with different labels {ys.tolist()}")
        y_subject[g] = ys[0]
    return [str(unique[i]) for i in order], y_subject, sums / counts[:, None]


def subject_and_slice_metrics(subjects: Sequence[str], y_true, prob, method: str = "mean") -> dict:
    """Slice-level and subject-level metrics of one evaluation, with constant-prediction guards.

    Args:
        subjects: ``(N,)`` subject id of each slice.
        y_true: ``(N,)`` integer class of each slice.
        prob: ``(N, C)`` or ``(N,)`` slice probabilities.
        method: subject aggregation, see :func:`aggregate_by_subject`.

    Returns:
        dict with ``slice_accuracy``, ``slice_roc_auc``, ``n_slices``; subject level:
        ``subject_accuracy``, ``roc_auc``, ``precision``, ``recall``, ``f1``,
        ``balanced_accuracy``, ``majority_baseline``, ``n_subjects``; and
        ``prediction_spread`` (population std of the subjects' probability of class 1; near 0
        means the network answers the same whatever the input) and ``constant_predictions``
        (True when every subject gets the same predicted class).
    """
    p = _as_prob(prob)
    slice_m = classification_metrics(y_true, p)
    names, y_s, p_s = aggregate_by_subject(subjects, y_true, p, method=method)
    subj_m = classification_metrics(y_s, p_s)
    return {
        "slice_accuracy": slice_m["accuracy"],
        "slice_roc_auc": slice_m["roc_auc"],
        "n_slices": slice_m["n"],
        "subject_accuracy": subj_m["accuracy"],
        "roc_auc": subj_m["roc_auc"],
        "precision": subj_m["precision"],
        "recall": subj_m["recall"],
        "f1": subj_m["f1"],
        "balanced_accuracy": subj_m["balanced_accuracy"],
        "majority_baseline": subj_m["majority_baseline"],
        "n_subjects": len(names),
        "prediction_spread": float(np.std(p_s[:, 1])),
        "constant_predictions": bool(np.unique(p_s.argmax(axis=1)).size == 1),
    }


def constant_prediction_warning(metrics: dict, auc_ranked: float = 0.8) -> str | None:
    """The warning for held-out subjects that all get one predicted class, or ``None`` if they do not.

    Two causes read differently: a subject ROC AUC of at least ``auc_ranked`` means the network still
    ranks the subjects, and the probabilities only sit on one side of 0.5 (a calibration shift, e.g.
    when most slices of a whole brain carry no evidence: docs/results.md); a low AUC means the answers
    do not depend on the subject (docs/architecture.md, "Lessons": shifted batch-norm statistics gave every subject p = 0.99).

    Args:
        metrics: the output of :func:`subject_and_slice_metrics`.
        auc_ranked: the subject AUC from which the subjects count as ranked.
    """
    if not metrics.get("constant_predictions"):
        return None
    spread, auc = metrics.get("prediction_spread", float("nan")), metrics.get("roc_auc", float("nan"))
    head = f"every held-out subject gets the same prediction (spread {spread:.3g}, subject AUC {auc:.2f})"
    if np.isfinite(auc) and auc >= auc_ranked:
        return (
            f"{head}: the subjects are still ranked, their probabilities sit on one side of 0.5; a "
            "calibration shift (e.g. many slices without evidence), so read the AUC beside the accuracy"
        )
    return f"{head}: check batch-norm statistics and intensity normalisation"


def summarize_folds(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (ddof=1), min and max of a metric over folds.

    NaN entries (e.g. an AUC undefined on a fold with one class) are left out and counted in
    ``n_nan``; ``n`` counts the finite values. ``std`` is NaN with fewer than two values and
    every statistic is NaN with none.
    """
    v = np.asarray(list(values), dtype=np.float64).reshape(-1)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "max": nan, "n": 0, "n_nan": int(v.size)}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "n": int(finite.size),
        "n_nan": int(v.size - finite.size),
    }
