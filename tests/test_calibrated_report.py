"""Calibrated subject calls through real MONAI evaluators: the fit on the validation subjects
(:class:`~hcp_cam.reports.calibration.ValidationFit`), applied by the test report beside the
uncalibrated calls (:class:`~hcp_cam.reports.handlers.TestReportHandler`).

The subjects are the whole-brain case of docs/results.md: ranked perfectly, yet every mean slice
probability of "old" is under 0.5, so the uncalibrated rule calls every subject young.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator

from hcp_cam.reports.calibration import ValidationFit
from hcp_cam.reports.handlers import TestReportHandler as ReportHandler  # not a pytest class

LABELS = ["young", "old"]
# subject -> (label, first-pixel value of each of its slices); logits (-v, v): p(old) = sigmoid(2v) < 0.5
VALIDATION = {
    "v1": (0, [-0.7, -0.6]),
    "v2": (0, [-0.65, -0.55, -0.6]),
    "v3": (1, [-0.2, -0.3]),
    "v4": (1, [-0.25]),
}
TEST = {
    "t1": (0, [-0.62, -0.58]),
    "t2": (0, [-0.7]),
    "t3": (1, [-0.22, -0.28, -0.3]),
    "t4": (1, [-0.2, -0.24]),
}


class _ByFirstPixel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)[:, :1]
        return torch.cat([-v, v], dim=1)


def _run(subjects: dict, handler) -> None:
    items = [
        {"image": torch.full((1, 4, 4), v), "label": label, "subject": s, "acquisition": "dwi"}
        for s, (label, values) in subjects.items()
        for v in values
    ]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(items), batch_size=3, shuffle=False),
        network=_ByFirstPixel(),
    )
    handler.attach(evaluator)
    evaluator.run()


@pytest.mark.parametrize("method", ["threshold", "logistic"])
def test_calls_fitted_on_validation_subjects_correct_the_test_calls_and_stand_beside_them(tmp_path, method):
    fit = ValidationFit("classification", method, tmp_path, LABELS)
    _run(VALIDATION, fit)
    assert fit.result["method"] == method and fit.result["n_validation_subjects"] == 4
    assert fit.result["balanced_accuracy"] == 1.0
    assert json.loads((tmp_path / "metrics" / "calibration.json").read_text()) == fit.result
    fitted = pd.read_csv(tmp_path / "metrics" / "validation_subject_predictions.csv")
    assert sorted(fitted["subject"]) == sorted(VALIDATION)  # fitted on the validation subjects only
    _run(TEST, ReportHandler(tmp_path, LABELS, calibration=fit))
    m = json.loads((tmp_path / "metrics" / "test_metrics.json").read_text())
    table = pd.read_csv(tmp_path / "metrics" / "test_subject_predictions.csv")
    # uncalibrated: every subject under 0.5, called young; calibrated: every subject right
    assert (table["prob_old"] < 0.5).all() and (table["predicted"] == 0).all()
    assert m["subject_accuracy"] == pytest.approx(0.5) and m["roc_auc"] == pytest.approx(1.0)
    assert m["calibrated_subject_accuracy"] == 1.0 and m["calibrated_balanced_accuracy"] == 1.0
    assert table["calibrated_correct"].all() and (table["calibrated_predicted"] == table["label"]).all()
    assert m["calibration"] == fit.result
    if method == "threshold":  # the validation cut: the midpoint of the gap between the classes
        p = fitted.set_index("subject")["prob_old"]
        assert m["calibration"]["threshold"] == pytest.approx(
            (p[["v1", "v2"]].max() + p[["v3", "v4"]].min()) / 2
        )
        assert (table["calibrated_predicted"] == (table["prob_old"] > m["calibration"]["threshold"])).all()
    else:  # Platt's slope is finite on separable subjects, and positive: a higher logit is older
        assert np.isfinite(m["calibration"]["a"]) and m["calibration"]["a"] > 0


def test_no_fit_leaves_the_test_report_uncalibrated(tmp_path):
    fit = ValidationFit("classification", "none", tmp_path, LABELS)
    _run(VALIDATION, fit)
    _run(TEST, ReportHandler(tmp_path, LABELS, calibration=fit))
    m = json.loads((tmp_path / "metrics" / "test_metrics.json").read_text())
    assert "calibrated_subject_accuracy" not in m and m["subject_accuracy"] == pytest.approx(0.5)
    assert "calibrated_predicted" not in pd.read_csv(tmp_path / "metrics" / "test_subject_predictions.csv")
