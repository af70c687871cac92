"""Regression metrics of age at slice and subject level, in numpy, with the mean-age baseline.

A subject's predicted age is the mean of its slices' predictions (:func:`aggregate_regression`).
Every metric comes with the baseline a reader needs beside it: the MAE of predicting the training
subjects' mean age for everyone (``mean_age_baseline``), and ``prediction_spread``, which catches a
regressor that gives every held-out subject nearly the same age (docs/architecture.md, "Lessons":
a regressor of age fitted its training brains, r 0.95, and predicted held-out ages no better than
their mean).

The brain-age gap is ``predicted - age``. Its dependence on age (regression to the mean: the young
are predicted too old, the old too young) is what the common linear bias correction removes
(:func:`fit_age_bias`, :func:`correct_age_bias`, after de Lange & Cole, NeuroImage: Clinical 2020):
fitted on validation subjects and reported separately, because it uses each subject's true age and
is therefore no prediction.

Conventions: ages and predictions in years, ``(N,)`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hcp_cam.errors import InputError

__all__ = [
    "regression_metrics",
    "aggregate_regression",
    "subject_and_slice_regression_metrics",
    "constant_regression_warning",
    "pearson_r",
    "fit_age_bias",
    "correct_age_bias",
    "bias_corrected_metrics",
]


def _as_values(x, name: str, n: int | None = None) -> np.ndarray:
    v = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise InputError(f"no samples: {name} is empty")
    if not np.isfinite(v).all():
        raise InputError(f"{name} holds NaN or Inf")
    if n is not None and v.size != n:
        raise InputError(f"{name} has {v.size} entries, expected {n}")
    return v


def pearson_r(x, y) -> float:
    """Pearson's correlation of two ``(N,)`` arrays; NaN when either is constant or ``N < 2``."""
    a, b = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if a.size < 2 or a.size != b.size:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def regression_metrics(age, predicted, baseline: float | None = None) -> dict[str, float]:
    """MAE, RMSE, Pearson r, R^2, mean error and the mean-age baseline of one set of predictions.

    Args:
        age: ``(N,)`` true ages, years.
        predicted: ``(N,)`` predicted ages, years.
        baseline: the constant a baseline predicts for everyone: the training subjects' mean age
            (``None``: the mean of ``age`` itself, an optimistic baseline).

    Returns:
        dict of floats: ``mae``, ``rmse``; ``pearson_r`` (NaN when the predictions or the ages are
        constant); ``r2`` (``1 - SS_res / SS_tot`` about the mean of ``age``: 0 for predicting that
        mean, negative when worse; NaN for constant ages); ``mean_error`` (mean of predicted - age:
        the bias); ``mean_age_baseline`` (MAE of predicting ``baseline``); ``mae_ratio`` (``mae``
        over that baseline: below 1 beats it); ``prediction_spread`` (population SD of the
        predictions); ``age_spread`` (SD of the ages); ``n``.

    Raises:
        InputError: empty input, lengths that differ, NaN.
    """
    y = _as_values(age, "age")
    p = _as_values(predicted, "predicted", n=y.size)
    err = p - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    base = float(y.mean() if baseline is None else baseline)
    base_mae = float(np.abs(y - base).mean())
    mae = float(np.abs(err).mean())
    return {
        "mae": mae,
        "rmse": float(np.sqrt((err**2).mean())),
        "pearson_r": pearson_r(y, p),
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "mean_error": float(err.mean()),
        "mean_age_baseline": base_mae,
        "mae_ratio": mae / base_mae if base_mae > 0 else float("nan"),
        "prediction_spread": float(p.std()),
        "age_spread": float(y.std()),
        "n": int(y.size),
    }


def aggregate_regression(
    subjects: Sequence[str], age, predicted
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Mean slice prediction per subject.

    Args:
        subjects: ``(N,)`` subject id of each slice.
        age: ``(N,)`` the true age of each slice's subject (must agree within a subject).
        predicted: ``(N,)`` slice predictions, years.

    Returns:
        ``(subjects_unique, age (S,), predicted (S,), n_slices (S,))``, subjects in order of first
        appearance.

    Raises:
        InputError: lengths differ, or a subject whose slices carry different ages.
    """
    y = _as_values(age, "age")
    p = _as_values(predicted, "predicted", n=y.size)
    subjects = [str(s) for s in subjects]
    if len(subjects) != y.size:
        raise InputError(f"subjects has {len(subjects)} entries but there are {y.size} slices")
    names = list(dict.fromkeys(subjects))
    index = {s: i for i, s in enumerate(names)}
    group = np.fromiter((index[s] for s in subjects), dtype=np.int64, count=len(subjects))
    counts = np.bincount(group, minlength=len(names)).astype(np.float64)
    p_s = np.bincount(group, weights=p, minlength=len(names)) / counts
    y_s = np.bincount(group, weights=y, minlength=len(names)) / counts
    spread = np.bincount(group, weights=np.abs(y - y_s[group]), minlength=len(names))
    if (spread > 1e-4 * np.maximum(1.0, np.abs(y_s)) * counts).any():
        bad = names[int(np.argmax(spread))]
        raise InputError(f"subject {bad!r} has slices with different ages")
    return names, y_s, p_s, counts


def subject_and_slice_regression_metrics(
    subjects: Sequence[str], age, predicted, baseline: float | None = None
) -> dict:
    """Slice-level and subject-level regression metrics of one evaluation.

    Args:
        subjects: ``(N,)`` subject id of each slice.
        age: ``(N,)`` true age of each slice's subject, years.
        predicted: ``(N,)`` slice predictions, years.
        baseline: the training subjects' mean age (see :func:`regression_metrics`).

    Returns:
        dict with ``slice_mae``, ``slice_rmse``, ``slice_pearson_r``, ``slice_r2``, ``n_slices``;
        subject level: ``mae``, ``rmse``, ``pearson_r``, ``r2``, ``mean_error``,
        ``mean_age_baseline``, ``mae_ratio``, ``prediction_spread``, ``age_spread``,
        ``n_subjects``; and ``constant_predictions`` (True when the subjects' predictions spread
        less than a tenth of their ages, or are all equal).
    """
    slice_m = regression_metrics(age, predicted, baseline)
    names, y_s, p_s, _ = aggregate_regression(subjects, age, predicted)
    subj = regression_metrics(y_s, p_s, baseline)
    spread, ages = subj["prediction_spread"], subj["age_spread"]
    return {
        "slice_mae": slice_m["mae"],
        "slice_rmse": slice_m["rmse"],
        "slice_pearson_r": slice_m["pearson_r"],
        "slice_r2": slice_m["r2"],
        "n_slices": slice_m["n"],
        **{k: subj[k] for k in ("mae", "rmse", "pearson_r", "r2", "mean_error", "mean_age_baseline")},
        **{k: subj[k] for k in ("mae_ratio", "prediction_spread", "age_spread")},
        "n_subjects": len(names),
        "constant_predictions": bool(spread == 0 or (ages > 0 and spread < 0.1 * ages)),
    }


def constant_regression_warning(metrics: dict) -> str | None:
    """The warning for held-out subjects that all get nearly the same predicted age, else ``None``."""
    if not metrics.get("constant_predictions"):
        return None
    return (
        f"the held-out subjects' predicted ages spread {metrics.get('prediction_spread', float('nan')):.3g} "
        f"years against {metrics.get('age_spread', float('nan')):.3g} for their true ages: the regressor "
        "answers about the same age for everyone (r "
        f"{metrics.get('pearson_r', float('nan')):.2f}, MAE ratio to the mean-age baseline "
        f"{metrics.get('mae_ratio', float('nan')):.2f}); judge it by held-out correlation, not its training fit"
    )


def fit_age_bias(age, predicted) -> dict[str, float]:
    """The linear age bias of predictions: least squares ``predicted = intercept + slope * age``.

    Fit it on validation subjects (never on the test subjects it corrects).

    Returns:
        ``{"intercept", "slope", "n"}``; ``slope`` 1 and ``intercept`` 0 is no bias.

    Raises:
        InputError: fewer than two subjects, all of one age, or a slope of 0 (predictions that do
            not depend on age cannot be corrected).
    """
    y = _as_values(age, "age")
    p = _as_values(predicted, "predicted", n=y.size)
    if y.size < 2 or np.ptp(y) == 0:
        raise InputError(f"the age bias needs at least two subjects of different ages, got ages {y.tolist()}")
    slope, intercept = np.polyfit(y, p, 1)
    if slope == 0:
        raise InputError("the predictions do not depend on age (slope 0): no bias correction possible")
    return {"intercept": float(intercept), "slope": float(slope), "n": int(y.size)}


def correct_age_bias(age, predicted, bias: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected predicted age and brain-age gap (de Lange & Cole 2020).

    ``corrected = predicted + (age - (intercept + slope * age))`` and ``corrected gap = corrected -
    age = predicted - (intercept + slope * age)``: the gap with the part the age explains removed.
    It needs the true age, so it serves analyses of the gap (e.g. group differences), not
    prediction; its MAE is not a measure of the regressor.

    Returns:
        ``(corrected_predicted_age (N,), corrected_gap (N,))``.
    """
    y = _as_values(age, "age")
    p = _as_values(predicted, "predicted", n=y.size)
    expected = bias["intercept"] + bias["slope"] * y
    return p + (y - expected), p - expected


def bias_corrected_metrics(age, predicted, bias: dict[str, float]) -> dict[str, float]:
    """The corrected gap's summary: ``corrected_mae`` (mean |corrected gap|), ``corrected_gap_mean``,
    ``corrected_gap_age_r`` (its correlation with age: near 0 when the correction worked) beside
    ``gap_age_r`` (the uncorrected gap's), and the fit's ``intercept``, ``slope``, ``n_fit``."""
    y = _as_values(age, "age")
    p = _as_values(predicted, "predicted", n=y.size)
    _, gap_c = correct_age_bias(y, p, bias)
    return {
        "corrected_mae": float(np.abs(gap_c).mean()),
        "corrected_gap_mean": float(gap_c.mean()),
        "corrected_gap_age_r": pearson_r(y, gap_c),
        "gap_age_r": pearson_r(y, p - y),
        "intercept": float(bias["intercept"]),
        "slope": float(bias["slope"]),
        "n_fit": int(bias.get("n", 0)),
    }
