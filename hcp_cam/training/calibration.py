"""Calibrated subject calls of a two-class network, fitted on validation subjects, in numpy.

A subject's score is the mean over its slices. The uncalibrated call takes the mean slice probability
of class 1 at 0.5. When most slices carry no evidence (a whole brain of slices, few of which cut the
region), that mean is pulled towards what the network answers on evidence-free slices and can sit on
one side of 0.5 for every subject although it ranks them perfectly (docs/results.md: a whole-brain
fold with AUC 1.0 called every subject "young"). Two remedies, fitted on the validation subjects and
applied unchanged to the test subjects:

- ``threshold``: the cut on the mean slice probability of class 1 that maximises the validation
  subjects' balanced accuracy. Candidates are the midpoints between consecutive distinct validation
  scores (and a point below the lowest and above the highest); of equally good candidates the one
  nearest 0.5 is taken (the least change from the uncalibrated rule), so separable validation
  subjects give the midpoint of the gap between the classes.
- ``logistic``: Platt scaling of the mean slice logit ``z`` (class 1 minus class 0):
  ``p = sigmoid(a z + b)`` by Newton's method on Platt's (1999) smoothed targets
  ``(n_1 + 1) / (n_1 + 2)`` and ``1 / (n_0 + 2)``, which keep ``a`` finite when the validation
  subjects are separable, with a small ridge on ``a`` and ``b``; the call is ``p > 0.5``.

With four to eight validation subjects either fit is coarse; the test report shows the calibrated
calls beside the uncalibrated ones, never instead of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hcp_cam.errors import ConfigError, InputError

__all__ = [
    "CALIBRATIONS",
    "subject_scores",
    "balanced_accuracy",
    "fit_threshold",
    "fit_logistic",
    "fit_calibration",
    "apply_calibration",
]

CALIBRATIONS = ("threshold", "logistic", "none")
_RIDGE = 1e-3


def subject_scores(
    subjects: Sequence[str], y_true, prob, logits
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per subject: the class, the mean slice probability of class 1 and the mean slice logit.

    Args:
        subjects: ``(N,)`` subject of each slice.
        y_true: ``(N,)`` class of each slice (0 or 1; one per subject).
        prob: ``(N, 2)`` slice probabilities.
        logits: ``(N, 2)`` slice logits.

    Returns:
        ``(subjects (S,), y (S,), mean prob of class 1 (S,), mean logit of class 1 minus class 0 (S,))``,
        subjects in order of first appearance.

    Raises:
        InputError: not two classes, lengths that differ, or a subject with two classes.
    """
    p = np.asarray(prob, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    if p.ndim != 2 or p.shape[1] != 2 or z.shape != p.shape:
        raise InputError(f"calibration needs two-class probabilities and logits, got {p.shape} and {z.shape}")
    if not (len(subjects) == y.size == p.shape[0]):
        raise InputError(f"{len(subjects)} subjects, {y.size} labels and {p.shape[0]} predictions differ")
    names = list(dict.fromkeys(str(s) for s in subjects))
    index = {s: i for i, s in enumerate(names)}
    g = np.fromiter((index[str(s)] for s in subjects), dtype=np.int64, count=y.size)
    counts = np.bincount(g, minlength=len(names)).astype(np.float64)
    y_s = np.zeros(len(names), dtype=np.int64)
    for k in range(len(names)):
        ys = np.unique(y[g == k])
        if ys.size != 1:
            raise InputError(f"subject {names[k]!r} has slices with different labels {ys.tolist()}")
        y_s[k] = ys[0]
    prob_s = np.bincount(g, weights=p[:, 1], minlength=len(names)) / counts
    logit_s = np.bincount(g, weights=z[:, 1] - z[:, 0], minlength=len(names)) / counts
    return names, y_s, prob_s, logit_s


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean recall over the classes present in ``y_true`` (two classes: 0 and 1)."""
    y, p = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    recalls = [float((p[y == c] == c).mean()) for c in np.unique(y)]
    return float(np.mean(recalls)) if recalls else float("nan")


def _check_two_classes(y: np.ndarray, score: np.ndarray) -> None:
    if y.size != score.size or y.size == 0:
        raise InputError(f"calibration needs as many scores as labels, got {score.size} and {y.size}")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise InputError(
            f"calibration needs validation subjects of both classes, got classes {sorted(set(y.tolist()))}"
        )


def fit_threshold(y_true, score, default: float = 0.5) -> dict[str, float]:
    """The cut on ``score`` (call class 1 where ``score > threshold``) that maximises balanced accuracy.

    Args:
        y_true: ``(S,)`` 0/1 classes of the validation subjects.
        score: ``(S,)`` their mean slice probability of class 1.
        default: the uncalibrated cut; ties between candidates go to the one nearest it.

    Returns:
        ``{"threshold", "balanced_accuracy" (validation, calibrated), "balanced_accuracy_default"
        (validation, at ``default``), "n"}``.

    Raises:
        InputError: both classes are not present, or the lengths differ.
    """
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    _check_two_classes(y, s)
    levels = np.unique(s)
    gap = float(np.diff(levels).min()) if levels.size > 1 else 1.0
    candidates = np.r_[levels[0] - gap / 2, (levels[1:] + levels[:-1]) / 2, levels[-1] + gap / 2]
    scores = np.array([balanced_accuracy(y, (s > t).astype(int)) for t in candidates])
    best = np.flatnonzero(np.isclose(scores, scores.max(), rtol=0, atol=1e-12))
    pick = best[np.argmin(np.abs(candidates[best] - default))]
    return {
        "threshold": float(candidates[pick]),
        "balanced_accuracy": float(scores[pick]),
        "balanced_accuracy_default": balanced_accuracy(y, (s > default).astype(int)),
        "n": int(y.size),
    }


def fit_logistic(y_true, logit, iterations: int = 100) -> dict[str, float]:
    """Platt scaling ``p = sigmoid(a * logit + b)`` of the validation subjects' mean slice logits.

    Returns:
        ``{"a", "b", "balanced_accuracy" (validation, calibrated), "n"}``.

    Raises:
        InputError: both classes are not present, or the lengths differ.
    """
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    z = np.asarray(logit, dtype=np.float64).reshape(-1)
    _check_two_classes(y, z)
    n1, n0 = int(y.sum()), int((y == 0).sum())
    t = np.where(y == 1, (n1 + 1.0) / (n1 + 2.0), 1.0 / (n0 + 2.0))
    x = np.stack([z, np.ones_like(z)], axis=1)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - t) + _RIDGE * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + _RIDGE * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    calls = (x @ w > 0).astype(int)
    return {
        "a": float(w[0]),
        "b": float(w[1]),
        "balanced_accuracy": balanced_accuracy(y, calls),
        "n": int(y.size),
    }


def fit_calibration(method: str, y_true, prob_score, logit_score) -> dict[str, float | str]:
    """``fit_threshold`` on the probabilities or ``fit_logistic`` on the logits, by ``method``
    (``none`` gives ``{"method": "none"}``); the result carries its ``method``.

    Raises:
        ConfigError: an unknown method (the message lists :data:`CALIBRATIONS`).
    """
    method = str(method).strip().lower()
    if method not in CALIBRATIONS:
        raise ConfigError(f"calibration must be one of {', '.join(CALIBRATIONS)}; got {method!r}")
    if method == "none":
        return {"method": "none"}
    if method == "threshold":
        return {"method": method, **fit_threshold(y_true, prob_score)}
    return {"method": method, **fit_logistic(y_true, logit_score)}


def apply_calibration(fit: dict, prob_score, logit_score) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated calls and class-1 probabilities of subjects from a :func:`fit_calibration` result.

    Returns:
        ``(calls (S,) 0/1, probability of class 1 (S,))``: for ``threshold`` the probability is the
        uncalibrated mean (only the cut moves); for ``logistic`` it is Platt's.
    """
    p = np.asarray(prob_score, dtype=np.float64).reshape(-1)
    z = np.asarray(logit_score, dtype=np.float64).reshape(-1)
    if fit.get("method") == "threshold":
        return (p > fit["threshold"]).astype(np.int64), p
    if fit.get("method") == "logistic":
        q = 1.0 / (1.0 + np.exp(-(fit["a"] * z + fit["b"])))
        return (q > 0.5).astype(np.int64), q
    return (p > 0.5).astype(np.int64), p
