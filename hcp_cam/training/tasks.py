"""The bundle's ``task``: ``classification`` of age groups (the default) or ``regression`` of age.

What differs between the two is settled here, so that the configs only name the task:

============================  ================================  ==========================================
                              classification                    regression
============================  ================================  ==========================================
network head                  ``num_classes`` logits            one output (the age, standardised)
target (``label``)            group index (int)                 ``(age - mean) / sd`` of the training
                                                                subjects (:class:`TargetScale`)
loss                          cross-entropy                     L1 (default) or MSE (``regression_loss``)
slice metrics (ignite)        accuracy                          MAE in years
subject metrics               :class:`~hcp_cam.training.        :class:`~hcp_cam.training.regression.
                              handlers.SubjectMetricsHandler`   SubjectRegressionHandler`
============================  ================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hcp_cam.errors import ConfigError

__all__ = [
    "TASKS",
    "REGRESSION_LOSSES",
    "check_task",
    "is_regression",
    "TargetScale",
    "target_scale",
    "output_units",
    "RegressionLoss",
    "make_loss",
    "regression_output",
    "loss_output_transform",
    "key_metric",
    "subject_metrics_handler",
    "metric_cmp",
]

TASKS = ("classification", "regression")
REGRESSION_LOSSES = ("l1", "mse")


def check_task(task: str) -> str:
    """The task name, checked.

    Raises:
        ConfigError: anything but ``classification`` or ``regression`` (the message lists them).
    """
    name = str(task).strip().lower()
    if name not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    return name


def is_regression(task: str) -> bool:
    """``True`` for ``task: regression`` (checked by :func:`check_task`)."""
    return check_task(task) == "regression"


@dataclass(frozen=True)
class TargetScale:
    """How ages in years become the network's target and back.

    Attributes:
        center: subtracted from the age (the training subjects' mean age when standardised, else 0).
        scale: the age difference one output unit stands for (their SD when standardised, else 1).
        train_mean: the training subjects' mean age: the prediction of the mean-age baseline.
    """

    center: float
    scale: float
    train_mean: float

    def to_target(self, age: Any) -> Any:
        """Years -> target units."""
        return (age - self.center) / self.scale

    def to_years(self, output: Any) -> Any:
        """Target units (network outputs) -> years."""
        return output * self.scale + self.center

    def as_dict(self) -> dict[str, float]:
        return {"center": self.center, "scale": self.scale, "train_mean": self.train_mean}


def target_scale(train_ages: Sequence[float], standardise: bool = True) -> TargetScale:
    """The :class:`TargetScale` of a run from its training subjects' ages (one per subject).

    Args:
        train_ages: the training subjects' ages, years.
        standardise: z-score the target (the SD is the population SD; 1 when all ages are equal),
            or regress on years as they are.

    Raises:
        ConfigError: no training age, or one that is not finite.
    """
    ages = np.asarray(list(train_ages), dtype=np.float64)
    if ages.size == 0 or not np.isfinite(ages).all():
        raise ConfigError(
            f"regression needs a finite age for every training subject, got {ages.tolist()[:5]}"
        )
    mean = float(ages.mean())
    if not standardise:
        return TargetScale(0.0, 1.0, mean)
    sd = float(ages.std())
    return TargetScale(mean, sd if sd > 0 else 1.0, mean)


def output_units(task: str, num_classes: int) -> int:
    """Outputs of the network's head: ``num_classes`` for classification, 1 for regression."""
    return 1 if is_regression(task) else int(num_classes)


class RegressionLoss(nn.Module):
    """L1 or MSE between a one-output head ``(B, 1)`` and targets ``(B,)``.

    The head's ``(B, 1)`` is flattened first: ``nn.L1Loss()((B, 1), (B,))`` would broadcast to
    ``(B, B)`` and average every prediction against every target.
    """

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        kind = str(kind).strip().lower()
        if kind not in REGRESSION_LOSSES:
            raise ConfigError(f"regression_loss must be one of {', '.join(REGRESSION_LOSSES)}; got {kind!r}")
        self.kind = kind

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = pred.reshape(pred.shape[0], -1)
        if pred.shape[1] != 1:
            raise ConfigError(f"a regression loss takes one output per sample, got {tuple(pred.shape)}")
        pred = pred[:, 0]
        target = torch.as_tensor(target, device=pred.device).reshape(-1).to(pred.dtype)
        if self.kind == "l1":
            return nn.functional.l1_loss(pred, target)
        return nn.functional.mse_loss(pred, target)


def make_loss(task: str, regression_loss: str = "l1") -> nn.Module:
    """``torch.nn.CrossEntropyLoss()`` for classification, :class:`RegressionLoss` for regression."""
    if is_regression(task):
        return RegressionLoss(regression_loss)
    return nn.CrossEntropyLoss()


def regression_output(scale: TargetScale | None = None) -> Callable[[Any], tuple[torch.Tensor, torch.Tensor]]:
    """An ignite ``output_transform`` for a one-output head: ``(pred (B,), label (B,))`` as float,
    in years when ``scale`` is given (else in target units)."""

    def _transform(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows = output if isinstance(output, list) else [output]
        pred = torch.stack([torch.as_tensor(r["pred"]).reshape(-1)[0] for r in rows]).float()
        label = torch.stack([torch.as_tensor(r["label"]).reshape(-1)[0] for r in rows]).float()
        if scale is not None:
            pred, label = scale.to_years(pred), scale.to_years(label)
        return pred, label

    return _transform


def loss_output_transform(task: str) -> Callable[[Any], tuple[torch.Tensor, ...]]:
    """The ``output_transform`` of the validation loss: ``(logits, class)`` or ``(pred (B, 1), target)``."""
    from hcp_cam.training.handlers import stack_output

    if not is_regression(task):
        return stack_output()

    def _transform(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        pred, label = regression_output(None)(output)
        return pred[:, None], label

    return _transform


def key_metric(task: str, name: str, scale: TargetScale | None = None) -> dict[str, Any]:
    """The engines' slice-level key metric: ``{name: ignite Accuracy}`` for classification,
    ``{name with 'accuracy' -> 'mae': ignite MeanAbsoluteError}`` in years for regression.

    Args:
        task: ``classification`` or ``regression``.
        name: the classification name (``train_accuracy``, ``val_accuracy``, ``test_slice_accuracy``).
        scale: the run's target scale (regression).
    """
    from ignite.metrics import Accuracy, MeanAbsoluteError

    from hcp_cam.training.handlers import stack_output

    if not is_regression(task):
        return {name: Accuracy(output_transform=stack_output())}
    if scale is None:
        raise ConfigError("regression metrics need the run's target scale")
    return {name.replace("accuracy", "mae"): MeanAbsoluteError(output_transform=regression_output(scale))}


def subject_metrics_handler(task: str, scale: TargetScale | None = None, prefix: str = "val_") -> Any:
    """The evaluator's subject-level metrics handler of the task:
    :class:`~hcp_cam.training.handlers.SubjectMetricsHandler` (classification) or
    :class:`~hcp_cam.training.regression.SubjectRegressionHandler` (regression, needs ``scale``)."""
    if not is_regression(task):
        from hcp_cam.training.handlers import SubjectMetricsHandler

        return SubjectMetricsHandler(prefix=prefix)
    from hcp_cam.training.regression import SubjectRegressionHandler

    if scale is None:
        raise ConfigError("regression metrics need the run's target scale")
    return SubjectRegressionHandler(scale, prefix=prefix)


def metric_cmp(task: str) -> Callable[[float, float], bool]:
    """The engines' ``metric_cmp_fn`` (is ``current`` better than ``previous``?): MONAI's default
    (higher is better) for accuracy, lower is better for a regressor's MAE; the engines log their
    best key metric with it."""
    from monai.engines.utils import default_metric_cmp_fn

    if not is_regression(task):
        return default_metric_cmp_fn
    return _lower_is_better


def _lower_is_better(current: float, prev: float) -> bool:
    return current < prev
