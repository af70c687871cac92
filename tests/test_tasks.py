"""The task switch: head size, loss, key metrics and target scale of classification and regression."""

from __future__ import annotations

import pytest
import torch
from ignite.metrics import Accuracy, MeanAbsoluteError

from hcp_cam.errors import ConfigError
from hcp_cam.training.tasks import (
    RegressionLoss,
    TargetScale,
    key_metric,
    loss_output_transform,
    make_loss,
    metric_cmp,
    output_units,
    regression_output,
    target_scale,
)


def test_regression_loss_pairs_each_prediction_with_its_own_target():
    pred = torch.tensor([[1.0], [2.0], [4.0]])
    target = torch.tensor([1.5, 2.0, 1.0], dtype=torch.float64)  # a collated float64 label
    # nn.L1Loss()((3, 1), (3,)) would broadcast to (3, 3) and give mean |p_i - t_j| = 1.333
    assert float(RegressionLoss("l1")(pred, target)) == pytest.approx((0.5 + 0 + 3) / 3)
    assert float(RegressionLoss("mse")(pred, target)) == pytest.approx((0.25 + 0 + 9) / 3)
    with pytest.raises(ConfigError, match="l1, mse"):
        RegressionLoss("huber")
    with pytest.raises(ConfigError, match="one output"):
        RegressionLoss()(torch.zeros(3, 2), target)


def test_the_task_picks_head_loss_and_metrics():
    assert output_units("classification", 3) == 3 and output_units("regression", 2) == 1
    assert isinstance(make_loss("classification"), torch.nn.CrossEntropyLoss)
    assert make_loss("regression", "mse").kind == "mse"
    assert isinstance(key_metric("classification", "val_accuracy")["val_accuracy"], Accuracy)
    scale = TargetScale(40.0, 20.0, 40.0)
    mae = key_metric("regression", "val_accuracy", scale)["val_mae"]
    assert isinstance(mae, MeanAbsoluteError)
    with pytest.raises(ConfigError, match="target scale"):
        key_metric("regression", "val_accuracy")
    rows = [
        {"pred": torch.tensor([0.5]), "label": torch.tensor(0.0)},
        {"pred": torch.tensor([-1.0]), "label": 1.0},
    ]
    pred, label = regression_output(scale)(rows)  # years
    assert pred.tolist() == [50.0, 20.0] and label.tolist() == [40.0, 60.0]
    pred, label = loss_output_transform("regression")(rows)  # target units, (B, 1) for the loss
    assert pred.shape == (2, 1) and label.tolist() == [0.0, 1.0]
    assert metric_cmp("regression")(3.0, 4.0) and not metric_cmp("classification")(3.0, 4.0)
    assert target_scale([10, 30]).as_dict() == {"center": 20.0, "scale": 10.0, "train_mean": 20.0}
    assert target_scale([30, 30]).scale == 1.0  # one age: no division by 0
