"""Ignite handlers of a regression run: slice predictions in years, subject-level metrics per epoch.

- :class:`RegressionCollector`: per-slice predicted and true ages (years) with the slice ids.
- :class:`SubjectRegressionHandler` (evaluator): the mean slice prediction per subject and its MAE,
  RMSE, Pearson r, R^2 and the mean-age baseline in ``engine.state.metrics``, the numbers that say
  whether a regressor learnt anything about a person it has not seen.
"""

from __future__ import annotations

import logging

import numpy as np
from ignite.engine import Engine, Events

from hcp_cam.training.handlers import SliceCollector
from hcp_cam.training.regression_metrics import (
    constant_regression_warning,
    subject_and_slice_regression_metrics,
)
from hcp_cam.training.tasks import TargetScale, regression_output

__all__ = ["RegressionCollector", "SubjectRegressionHandler", "SUBJECT_KEYS"]

logger = logging.getLogger(__name__)

#: subject-level keys of :func:`subject_and_slice_regression_metrics` written as ``<prefix>subject_<key>``
SUBJECT_KEYS = ("mae", "rmse", "pearson_r", "r2", "mean_error", "mae_ratio", "prediction_spread")


class RegressionCollector(SliceCollector):
    """Collects, per iteration, the predicted and true ages (years) of each slice and its ids.

    Args:
        scale: the run's target scale (network outputs -> years).
    """

    def __init__(self, scale: TargetScale) -> None:
        self.scale = scale
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.age: list[np.ndarray] = []
        self.predicted: list[np.ndarray] = []

    def update(self, engine: Engine) -> None:
        super().update(engine)  # the ids
        pred, label = regression_output(self.scale)(engine.state.output)
        self.predicted.append(pred.detach().cpu().numpy().astype(np.float64))
        self.age.append(label.detach().cpu().numpy().astype(np.float64))

    def ages(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(subjects (N,), age (N,), predicted (N,))``, years."""
        if not self.predicted:
            return [], np.zeros(0), np.zeros(0)
        return self.subject, np.concatenate(self.age), np.concatenate(self.predicted)


class SubjectRegressionHandler:
    """Adds subject-level regression metrics to ``engine.state.metrics`` after each evaluation.

    Attach it to the evaluator before handlers that read the metrics (stats, checkpoints). Keys (with
    ``prefix``): ``subject_mae``, ``subject_rmse``, ``subject_pearson_r``, ``subject_r2``,
    ``subject_mean_error``, ``subject_mae_ratio``, ``subject_prediction_spread`` (years),
    ``slice_pearson_r``, ``mean_age_baseline`` (the MAE of predicting the training mean age),
    ``n_subjects``. A warning is logged when the subjects' predictions hardly spread.

    Args:
        scale: the run's target scale; its ``train_mean`` is the baseline's prediction.
        prefix: key prefix.
    """

    def __init__(self, scale: TargetScale, prefix: str = "val_") -> None:
        self.scale = scale
        self.prefix = prefix
        self.collector = RegressionCollector(scale)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.collector.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collector.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.completed)

    def completed(self, engine: Engine) -> None:
        subjects, age, predicted = self.collector.ages()
        if not subjects:
            return
        m = subject_and_slice_regression_metrics(subjects, age, predicted, baseline=self.scale.train_mean)
        warning = constant_regression_warning(m)
        if warning:
            logger.warning(warning)
        out = {f"subject_{k}": m[k] for k in SUBJECT_KEYS}
        out.update(
            slice_pearson_r=m["slice_pearson_r"],
            mean_age_baseline=m["mean_age_baseline"],
            n_subjects=m["n_subjects"],
        )
        for k, v in out.items():
            engine.state.metrics[f"{self.prefix}{k}"] = float(v)
