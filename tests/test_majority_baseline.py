"""The majority baseline is over subjects, not slices: fixtures with unequal slice counts per
subject, through the metrics and through a real MONAI evaluator with the project's handlers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator

from hcp_cam.reports.handlers import TestReportHandler
from hcp_cam.training import handlers
from hcp_cam.training.metrics import subject_and_slice_metrics

# two young subjects with 2 slices each, one old subject with 12: slices are 12/16 old,
# subjects 2/3 young
SLICES = {"y1": (0, 2), "y2": (0, 2), "o1": (1, 12)}


def _slices() -> tuple[list[str], list[int]]:
    subjects = [s for s, (_, n) in SLICES.items() for _ in range(n)]
    labels = [label for _, (label, n) in SLICES.items() for _ in range(n)]
    return subjects, labels


def test_majority_baseline_is_computed_over_subjects_with_unequal_slice_counts():
    subjects, labels = _slices()
    prob = np.full(len(labels), 0.3)  # every slice answers "young"
    m = subject_and_slice_metrics(subjects, labels, prob)
    assert m["n_subjects"] == 3 and m["n_slices"] == 16
    assert m["majority_baseline"] == pytest.approx(2 / 3)  # over slices it would be 12/16
    assert m["subject_accuracy"] == pytest.approx(2 / 3) and m["slice_accuracy"] == pytest.approx(4 / 16)


class _ByFirstPixel(nn.Module):
    """Logits from the first pixel: (-v, v), so each slice's answer is set by its data."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)[:, :1]
        return torch.cat([-v, v], dim=1)


def test_evaluator_handlers_report_the_subject_majority_baseline(tmp_path):
    subjects, labels = _slices()
    rng = np.random.default_rng(0)
    items = [
        {
            "image": torch.full((1, 4, 4), float(rng.uniform(-1, 1))),
            "label": lab,
            "subject": s,
            "acquisition": "dwi",
        }
        for s, lab in zip(subjects, labels, strict=True)
    ]
    loader = DataLoader(Dataset(items), batch_size=5, shuffle=False)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader, network=_ByFirstPixel()
    )
    handlers.SubjectMetricsHandler(prefix="val_").attach(evaluator)
    TestReportHandler(tmp_path, ["young", "old"]).attach(evaluator)
    evaluator.run()
    assert evaluator.state.metrics["val_n_slices"] == 16 and evaluator.state.metrics["val_n_subjects"] == 3
    assert evaluator.state.metrics["val_majority_baseline"] == pytest.approx(2 / 3)
    written = json.loads((tmp_path / "metrics" / "test_metrics.json").read_text())
    assert written["majority_baseline"] == pytest.approx(2 / 3) and written["n_subjects"] == 3
