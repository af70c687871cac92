"""What the validation subjects tell the test report: a classifier's calibrated subject calls, or a
regressor's linear age bias.

The evaluate run first runs the best checkpoint over the validation split with a
:class:`ValidationFit` attached, then over the test split, whose report
(:class:`~hcp_cam.reports.handlers.TestReportHandler`,
:class:`~hcp_cam.reports.regression.RegressionReportHandler`) reads the fit and shows its result
beside, never instead of, the uncalibrated numbers. Files (under the run folder):
``metrics/calibration.json`` (the fit, and the validation numbers before and after) and
``metrics/validation_subject_predictions.csv``.

- two classes: :func:`hcp_cam.training.calibration.fit_calibration` (``calibration``: ``threshold``,
  the default, ``logistic`` or ``none``);
- more classes: not calibrated (recorded as such);
- regression: :func:`hcp_cam.training.regression_metrics.fit_age_bias` (the brain-age bias
  correction of de Lange & Cole 2020), whatever ``calibration`` says unless it is ``none``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ignite.engine import Engine, Events

from hcp_cam.errors import InputError
from hcp_cam.io import atomic_path, write_json_atomic
from hcp_cam.training.calibration import apply_calibration, fit_calibration, subject_scores
from hcp_cam.training.handlers import SliceCollector
from hcp_cam.training.metrics import aggregate_by_subject
from hcp_cam.training.regression import RegressionCollector
from hcp_cam.training.regression_metrics import aggregate_regression, fit_age_bias
from hcp_cam.training.tasks import TargetScale, is_regression

__all__ = ["ValidationFit", "run_validation_fit"]

logger = logging.getLogger(__name__)


class ValidationFit:
    """An ignite handler for the validation pass of an evaluate run: collects the slice outputs, and
    at the end fits the calibration (classification) or the age bias (regression).

    Args:
        task: ``classification`` or ``regression``.
        method: ``threshold``, ``logistic`` or ``none`` (classification); regression fits the age
            bias unless ``none``.
        output_dir: the run folder (``metrics/calibration.json``, ``validation_subject_predictions.csv``).
        labels: class names in label order.
        scale: the regression target scale.

    Attributes:
        result: the fit once the pass is complete (``{"method": ..., ...}``), else ``None``.
    """

    def __init__(
        self,
        task: str,
        method: str = "threshold",
        output_dir: str | os.PathLike | None = None,
        labels: Sequence[str] = (),
        scale: TargetScale | None = None,
    ) -> None:
        self.regression = is_regression(task)
        self.method = str(method).strip().lower()
        fit_calibration(self.method, [0, 1], [0.0, 1.0], [0.0, 1.0])  # the name, checked now
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.labels = list(labels)
        self.scale = scale
        self.collector = RegressionCollector(scale) if self.regression else SliceCollector()
        self.result: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.collector.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collector.update)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def completed(self, engine: Engine) -> None:
        if self.regression:
            self.result, table = self._fit_regression()
        else:
            self.result, table = self._fit_classification()
        logger.info("validation fit for the test report: %s", self.result)
        if self.output_dir is not None:
            metrics = self.output_dir / "metrics"
            write_json_atomic(self.result, metrics / "calibration.json")
            with atomic_path(metrics / "validation_subject_predictions.csv") as tmp:
                table.to_csv(tmp, index=False)

    def _fit_classification(self) -> tuple[dict[str, Any], pd.DataFrame]:
        subjects, y, prob = self.collector.arrays()
        if not subjects:
            return {"method": "none", "reason": "no validation slice"}, pd.DataFrame()
        if prob.shape[1] != 2:
            names, y_s, p_s = aggregate_by_subject(subjects, y, prob)
            table = pd.DataFrame({"subject": names, "label": y_s})
            for j in range(prob.shape[1]):
                table[f"prob_{self._label(j)}"] = p_s[:, j]
            reason = f"calibration needs two classes, the network has {prob.shape[1]}"
            return {"method": "none", "reason": reason}, table
        logits = np.concatenate(self.collector.logits)
        names, y_s, p_s, z_s = subject_scores(subjects, y, prob, logits)
        table = pd.DataFrame(
            {"subject": names, "label": y_s, f"prob_{self._label(1)}": p_s, "mean_logit": z_s}
        )
        if self.method == "none":
            return {"method": "none", "reason": "calibration none"}, table
        try:
            fit = fit_calibration(self.method, y_s, p_s, z_s)
        except InputError as e:
            logger.warning("no calibration: %s", e)
            return {"method": "none", "reason": str(e)}, table
        calls, q = apply_calibration(fit, p_s, z_s)
        table["calibrated_predicted"] = calls
        if fit["method"] == "logistic":
            table[f"calibrated_prob_{self._label(1)}"] = q
        fit.update(positive_class=self._label(1), n_validation_subjects=len(names))
        return fit, table

    def _fit_regression(self) -> tuple[dict[str, Any], pd.DataFrame]:
        subjects, age, predicted = self.collector.ages()
        names, y_s, p_s, _ = aggregate_regression(subjects, age, predicted)
        table = pd.DataFrame({"subject": names, "age": y_s, "predicted_age": p_s, "brain_age_gap": p_s - y_s})
        if self.method == "none":
            return {"method": "none", "reason": "calibration none"}, table
        try:
            bias = fit_age_bias(y_s, p_s)
        except InputError as e:
            logger.warning("no age-bias fit: %s", e)
            return {"method": "none", "reason": str(e)}, table
        return {"method": "linear_age_bias", **bias, "n_validation_subjects": len(names)}, table

    def _label(self, i: int) -> str:
        return self.labels[i] if i < len(self.labels) else str(i)


def run_validation_fit(evaluator: Any, prepared: Any) -> Any:
    """Run the validation pass of an evaluate run, or skip it (with a warning) when the run has no
    validation subject (``val_fraction 0``): the test report is then uncalibrated."""
    if not prepared.entries.get("validation"):
        logger.warning("no validation subject: the test report has no calibration or age-bias fit")
        return None
    return evaluator.run()
