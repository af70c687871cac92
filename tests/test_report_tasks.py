"""The run report of a regression run and of calibrated calls, from run folders written by hand
(the bundle-made ones are checked in test_bundle_regression.py and test_bundle_eval_infer.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hcp_cam.reports import write_run_report

CONFIG = {"arch": "alexnet", "spatial_dims": 2, "network_width": 0.25, "image_size": 96, "epochs": 20}


def _run(tmp_path, config: dict, metrics: dict, subjects: pd.DataFrame):
    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**CONFIG, **config}))
    (run / "metrics" / "test_metrics.json").write_text(json.dumps(metrics))
    subjects.to_csv(run / "metrics" / "test_subject_predictions.csv", index=False)
    return (run / "report.html") if write_run_report(run) else None


REGRESSION = {
    "task": "regression", "mae": 6.25, "rmse": 7.5, "pearson_r": 0.8125, "r2": 0.5625, "mean_error": -1.5,
    "mean_age_baseline": 12.5, "mae_ratio": 0.5, "slice_mae": 9.75, "slice_rmse": 11.0, "slice_pearson_r": 0.4375,
    "slice_r2": 0.1875, "prediction_spread": 10.0, "age_spread": 14.0, "n_subjects": 4, "n_slices": 192,
    "constant_predictions": False,
    "bias_correction": {"intercept": 20.0, "slope": 0.625, "n_fit": 8, "gap_age_r": -0.75,
                        "corrected_gap_age_r": 0.0625, "corrected_mae": 4.5},
}  # fmt: skip
AGES = pd.DataFrame(
    {
        "subject": ["s1", "s2", "s3", "s4"],
        "acquisition": "dwi",
        "age": [10.0, 30.0, 50.0, 70.0],
        "predicted_age": [18.25, 27.5, 44.0, 63.0],
        "brain_age_gap": [8.25, -2.5, -6.0, -7.0],
    }
)


def test_a_regression_page_scores_the_age_beside_the_mean_age_baseline(tmp_path):
    page = _run(tmp_path, {"task": "regression"}, REGRESSION, AGES).read_text()
    assert "subject MAE 6.25 y (mean-age baseline 12.50 y, ratio 0.50), Pearson r 0.812, R^2 0.562" in page
    for label, subject, sliced in (("MAE (years)", "6.250", "9.750"), ("Pearson r", "0.812", "0.438")):
        assert f'<td>{label}</td><td class="num">{subject}</td><td class="num">{sliced}</td>' in page
    assert '<td>Mean-age baseline MAE (years)</td><td class="num">12.500</td>' in page
    assert "predicted = 20.00 + 0.625 x age (8 subjects)" in page and "-0.750 / 0.062" in page
    assert "18.250" in page and "-7.000" in page  # predicted age and gap per subject
    assert "subject accuracy" not in page and "Majority-class baseline" not in page
    assert "no better than the baseline" not in page  # ratio 0.5
    # no better than the mean age, and constant: both warned
    worse = {**REGRESSION, "mae_ratio": 1.25, "constant_predictions": True, "prediction_spread": 0.5}
    page = _run(tmp_path / "worse", {"task": "regression"}, worse, AGES).read_text()
    assert "1.25 times that of predicting the training subjects&#x27; mean age" in page
    assert "about the same age for everyone" in page


CLASSES = {
    "subject_accuracy": 0.5, "majority_baseline": 0.5, "roc_auc": 1.0, "slice_accuracy": 0.5, "n_subjects": 4,
    "n_slices": 64, "balanced_accuracy": 0.5, "calibrated_subject_accuracy": 1.0,
    "calibrated_balanced_accuracy": 1.0, "calibration": {"method": "threshold", "threshold": 0.4},
}  # fmt: skip
CALLS = pd.DataFrame(
    {
        "subject": ["a", "b", "c", "d"],
        "label": [0, 0, 1, 1],
        "group": ["young", "young", "old", "old"],
        "prob_young": [0.7, 0.66, 0.55, 0.53],
        "prob_old": [0.3, 0.34, 0.45, 0.47],
        "predicted_group": "young",
        "correct": [True, True, False, False],
        "calibrated_correct": True,
    }
)


@pytest.mark.parametrize("calibrated", [True, False])
def test_calibrated_calls_stand_beside_the_uncalibrated(tmp_path, calibrated):
    metrics = CLASSES if calibrated else {k: v for k, v in CLASSES.items() if "calibrat" not in k}
    calls = CALLS if calibrated else CALLS.drop(columns="calibrated_correct")
    page = _run(tmp_path, {}, metrics, calls).read_text()
    assert '<td>Accuracy</td><td class="num">0.500</td>' in page  # the uncalibrated call stays
    row = '<td>Accuracy, calibrated on the validation subjects (threshold)</td><td class="num">1.000</td>'
    assert (row in page) == calibrated
    assert ("<th>correct (calibrated)</th>" in page) == calibrated
