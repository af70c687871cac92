"""What the run report (:mod:`hcp_cam.reports.run_report`) shows that depends on the run's task.

A regression run (``task: regression``) is scored by its subject-level MAE beside the mean-age
baseline, r and R^2, with the scatter and residual plots and the age-bias correction fitted on the
validation subjects shown apart; a classifier evaluated with a validation calibration shows the
calibrated subject calls beside the uncalibrated ones (never instead of them).
"""

from __future__ import annotations

import math
from typing import Any

from hcp_cam.reports.html import figure, key_values
from hcp_cam.reports.html import table as html_table
from hcp_cam.training.regression_metrics import constant_regression_warning

__all__ = [
    "REGRESSION_ROWS",
    "is_regression_run",
    "calibrated_rows",
    "prediction_columns",
    "regression_summary",
    "regression_warnings",
    "regression_metrics_body",
]

# (label, key at subject level, key at slice level) of metrics/test_metrics.json
REGRESSION_ROWS = (
    ("MAE (years)", "mae", "slice_mae"),
    ("Mean-age baseline MAE (years)", "mean_age_baseline", None),
    ("MAE / baseline", "mae_ratio", None),
    ("RMSE (years)", "rmse", "slice_rmse"),
    ("Pearson r", "pearson_r", "slice_pearson_r"),
    ("R^2", "r2", "slice_r2"),
    ("Mean error (years, predicted - true)", "mean_error", None),
    ("Spread of predicted ages (SD, years)", "prediction_spread", None),
    ("Spread of true ages (SD, years)", "age_spread", None),
    ("Number", "n_subjects", "n_slices"),
)


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def is_regression_run(config: dict | None, metrics: dict | None) -> bool:
    """``True`` when the run's ``config.json`` or its test metrics say ``task: regression``."""
    return any(str((d or {}).get("task", "")).strip().lower() == "regression" for d in (config, metrics))


def calibrated_rows(m: dict) -> list[list[Any]]:
    """Rows (metric, subject level, slice level) of the calibrated calls, when the evaluation had a
    validation calibration; ``[]`` otherwise."""
    if "calibrated_subject_accuracy" not in m:
        return []
    method = (m.get("calibration") or {}).get("method", "?")
    return [
        [
            f"Accuracy, calibrated on the validation subjects ({method})",
            _num(m["calibrated_subject_accuracy"]),
            "",
        ],
        [f"Balanced accuracy, calibrated ({method})", _num(m.get("calibrated_balanced_accuracy")), ""],
    ]


def prediction_columns(table: Any) -> tuple[list[str], list[str]]:
    """``(columns, headers)`` of the test subjects' table (``metrics/test_subject_predictions.csv``):
    true and predicted age with the brain-age gap for a regressor; groups, probabilities, the call and
    the calibrated call (where the evaluation had one) for a classifier."""
    if "predicted_age" in table:
        return (
            ["subject", "age", "predicted_age", "brain_age_gap"],
            ["subject", "age (y)", "predicted age (y)", "brain-age gap (y)"],
        )
    probs = [c for c in table.columns if c.startswith("prob_")]
    cols = ["subject", "group", "predicted_group", *probs, "correct"]
    headers = ["subject", "true group", "predicted", *[f"P({c[5:]})" for c in probs], "correct"]
    if "calibrated_correct" in table:
        cols.append("calibrated_correct")
        headers.append("correct (calibrated)")
    return cols, headers


def regression_summary(m: dict) -> str:
    """The one-line test result of a regression run."""
    return (
        f"subject MAE {_num(m.get('mae')):.2f} y (mean-age baseline {_num(m.get('mean_age_baseline')):.2f} y, "
        f"ratio {_num(m.get('mae_ratio')):.2f}), Pearson r {_num(m.get('pearson_r')):.3f}, "
        f"R^2 {_num(m.get('r2')):.3f}, {m.get('n_subjects', '?')} subjects"
    )


def regression_warnings(m: dict) -> list[str]:
    """Warnings of a regression run's test metrics: constant predictions, no better than the mean age,
    too few subjects for one number."""
    out = []
    w = constant_regression_warning(m)
    if w:
        out.append(w)
    ratio = _num(m.get("mae_ratio"))
    if math.isfinite(ratio) and ratio >= 1:
        out.append(
            f"the subject MAE is {ratio:.2f} times that of predicting the training subjects' mean age: "
            "no better than the baseline"
        )
    n = _num(m.get("n_subjects"))
    if math.isfinite(n) and 0 < n < 10:
        out.append(f"{int(n)} test subjects: report the spread over folds (hcp-cam compare)")
    return out


def regression_metrics_body(m: dict, figure_path: Any) -> str:
    """The test-metrics section of a regression run; ``figure_path(name)`` gives the path of
    ``figures/<name>`` in the run folder."""
    rows = []
    for label, s, t in REGRESSION_ROWS:
        values = [_num(m.get(k)) if k else "" for k in (s, t)]
        if label == "Number":
            values = [int(v) if isinstance(v, float) and math.isfinite(v) else v for v in values]
        rows.append([label, *values])
    body = html_table(
        ["metric", "subject level", "slice level"],
        rows,
        caption="Held-out test set (metrics/test_metrics.json)",
    )
    body += (
        '<p class="note">Subject level: each subject\'s slice predictions averaged (the number to report). '
        "The baseline predicts the training subjects' mean age for everyone; judge the regressor by its MAE "
        "against it and by the held-out correlation, never by its training fit.</p>"
    )
    bias = m.get("bias_correction")
    if isinstance(bias, dict):
        body += "<h3>Age-bias correction (reported apart, never applied to the predictions)</h3>"
        body += key_values(
            [
                ("Fit on the validation subjects", f"predicted = {_num(bias.get('intercept')):.2f} + "
                 f"{_num(bias.get('slope')):.3f} x age ({bias.get('n_fit', '?')} subjects)"),
                ("Brain-age gap vs age, r (uncorrected / corrected)",
                 f"{_num(bias.get('gap_age_r')):.3f} / {_num(bias.get('corrected_gap_age_r')):.3f}"),
                ("Mean |corrected gap| (years)", _num(bias.get("corrected_mae"))),
            ]
        )  # fmt: skip
    for name, caption in (
        ("test_age_scatter.png", "Predicted against true age (subjects), identity line"),
        ("test_age_residuals.png", "Brain-age gap against age (subjects): the age bias"),
    ):
        path = figure_path(name)
        if path.is_file():
            body += figure(path, caption, size="small")
    return body
