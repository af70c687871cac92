"""The test report of a regression run (age in years), and the report handler of either task.

:class:`RegressionReportHandler` writes, under the run folder:

- ``metrics/test_metrics.json``: subject level (mean of the slice predictions) ``mae``, ``rmse``,
  ``pearson_r``, ``r2``, ``mean_error`` (bias), ``mean_age_baseline`` (MAE of predicting the training
  subjects' mean age for everyone) and ``mae_ratio``, the same per slice (``slice_*``), the spreads,
  ``n_subjects``, ``n_slices``, ``task: regression``, ``target_scale``; and, apart, under
  ``bias_correction``, the linear age-bias correction fitted on the validation subjects;
- ``metrics/test_subject_predictions.csv``: ``subject, acquisition, age, predicted_age,
  brain_age_gap, n_slices`` (``acquisition``: the subject's acquisitions, ``;``-separated);
- ``metrics/test_bias_correction.csv``: ``subject, age, predicted_age, bias_corrected_predicted_age,
  bias_corrected_gap`` (only with a validation fit: the correction uses the true age, so it is
  reported beside the predictions, never applied to them);
- ``metrics/test_slice_predictions.csv``: ``subject, acquisition, axis, index, age, predicted_age``;
- ``figures/test_age_scatter.png`` (predicted against true age, identity line, the baseline) and
  ``figures/test_age_residuals.png`` (brain-age gap against age with its linear trend: the bias).
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

from hcp_cam.figure_io import new_figure, save_figure
from hcp_cam.io import atomic_path, write_json_atomic
from hcp_cam.training.regression import RegressionCollector
from hcp_cam.training.regression_metrics import (
    aggregate_regression,
    bias_corrected_metrics,
    constant_regression_warning,
    correct_age_bias,
    pearson_r,
    subject_and_slice_regression_metrics,
)
from hcp_cam.training.tasks import TargetScale, is_regression

__all__ = ["RegressionReportHandler", "plot_age_scatter", "plot_age_residuals", "make_test_report"]

logger = logging.getLogger(__name__)


def plot_age_scatter(age, predicted, out_path: str | os.PathLike, baseline: float | None = None) -> Path:
    """Predicted against true age, one point per subject, with the identity line (and the baseline).

    Args:
        age: ``(S,)`` true ages, years.
        predicted: ``(S,)`` predicted ages, years.
        out_path: the PNG.
        baseline: the training mean age (a horizontal line: what the mean-age baseline predicts).
    """
    y, p = np.asarray(age, dtype=float), np.asarray(predicted, dtype=float)
    fig = new_figure(5.5, 5)
    ax = fig.add_subplot()
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="grey", lw=1, label="identity")
    if baseline is not None:
        ax.axhline(baseline, ls=":", color="tab:orange", lw=1, label=f"training mean ({baseline:.1f})")
    ax.scatter(y, p, s=22, color="tab:blue", zorder=3)
    mae = float(np.abs(p - y).mean())
    ax.set(
        xlabel="age (years)",
        ylabel="predicted age (years)",
        title=f"test subjects: MAE {mae:.2f} y, r {pearson_r(y, p):.2f}, n {y.size}",
        xlim=(lo - pad, hi + pad),
        ylim=(lo - pad, hi + pad),
    )
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_path)


def plot_age_residuals(age, predicted, out_path: str | os.PathLike) -> Path:
    """Brain-age gap (predicted - age) against age, with its least-squares line: a falling line is
    the usual regression to the mean (young predicted too old, old too young)."""
    y, p = np.asarray(age, dtype=float), np.asarray(predicted, dtype=float)
    gap = p - y
    fig = new_figure(5.5, 4.5)
    ax = fig.add_subplot()
    ax.axhline(0.0, ls="--", color="grey", lw=1)
    ax.scatter(y, gap, s=22, color="tab:blue", zorder=3)
    title = "brain-age gap"
    if y.size >= 2 and np.ptp(y) > 0:
        slope, intercept = np.polyfit(y, gap, 1)
        xs = np.array([y.min(), y.max()])
        ax.plot(xs, intercept + slope * xs, color="tab:red", lw=1, label=f"trend: {slope:+.2f} y per y")
        ax.legend(loc="upper right", fontsize=8)
        title += f" (r with age {pearson_r(y, gap):.2f})"
    ax.set(xlabel="age (years)", ylabel="predicted - true age (years)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_path)


class RegressionReportHandler:
    """Writes the test report of a regression run when the evaluator completes (see the module).

    Args:
        output_dir: the run folder.
        scale: the run's target scale (outputs -> years; its ``train_mean`` is the baseline).
        prefix: file name prefix.
        calibration: a :class:`~hcp_cam.reports.calibration.ValidationFit` run on the validation
            subjects first (its age-bias fit is reported apart), or ``None``.
    """

    def __init__(
        self, output_dir: str | os.PathLike, scale: TargetScale, prefix: str = "test", calibration: Any = None
    ) -> None:
        self.output_dir = Path(output_dir)
        self.scale = scale
        self.prefix = prefix
        self.calibration = calibration
        self.collector = RegressionCollector(scale)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.collector.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collector.update)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def completed(self, engine: Engine) -> None:
        subjects, age, predicted = self.collector.ages()
        metrics: dict[str, Any] = subject_and_slice_regression_metrics(
            subjects, age, predicted, baseline=self.scale.train_mean
        )
        metrics.update(task="regression", labels=["age"], target_scale=self.scale.as_dict())
        names, y_s, p_s, counts = aggregate_regression(subjects, age, predicted)
        c = self.collector
        acquisitions: dict[str, list[str]] = {}
        for s, a in zip(c.subject, c.acquisition, strict=True):
            acquisitions.setdefault(s, [])
            if a not in acquisitions[s]:
                acquisitions[s].append(a)
        subj_df = pd.DataFrame(
            {
                "subject": names,
                "acquisition": [";".join(acquisitions[s]) for s in names],
                "age": y_s,
                "predicted_age": p_s,
                "brain_age_gap": p_s - y_s,
                "n_slices": counts.astype(int),
            }
        )
        slice_df = pd.DataFrame(
            {"subject": c.subject, "acquisition": c.acquisition, "axis": c.axis, "index": c.index}
        ).assign(age=age, predicted_age=predicted)
        fit = getattr(self.calibration, "result", None)
        bias_df = None
        if fit and fit.get("method") == "linear_age_bias":
            corrected, gap_c = correct_age_bias(y_s, p_s, fit)
            metrics["bias_correction"] = {
                "note": "fitted on the validation subjects (predicted = intercept + slope * age); uses the "
                "true age, so it corrects the gap for analyses of it and is no prediction",
                **bias_corrected_metrics(y_s, p_s, fit),
            }
            bias_df = pd.DataFrame(
                {
                    "subject": names,
                    "age": y_s,
                    "predicted_age": p_s,
                    "bias_corrected_predicted_age": corrected,
                    "bias_corrected_gap": gap_c,
                }
            )
        metrics_dir, figures = self.output_dir / "metrics", self.output_dir / "figures"
        write_json_atomic(metrics, metrics_dir / f"{self.prefix}_metrics.json")
        for name, table in (
            ("subject_predictions", subj_df),
            ("slice_predictions", slice_df),
            ("bias_correction", bias_df),
        ):
            if table is not None:
                with atomic_path(metrics_dir / f"{self.prefix}_{name}.csv") as tmp:
                    table.to_csv(tmp, index=False)
        plot_age_scatter(y_s, p_s, figures / f"{self.prefix}_age_scatter.png", baseline=self.scale.train_mean)
        plot_age_residuals(y_s, p_s, figures / f"{self.prefix}_age_residuals.png")
        engine.state.metrics.update(
            {f"{self.prefix}_{k}": v for k, v in metrics.items() if isinstance(v, float)}
        )
        logger.info(
            "%s: subject MAE %.2f y (mean-age baseline %.2f y, ratio %.2f), r %.3f, R^2 %.3f, %d subjects",
            self.prefix,
            metrics["mae"],
            metrics["mean_age_baseline"],
            metrics["mae_ratio"],
            metrics["pearson_r"],
            metrics["r2"],
            metrics["n_subjects"],
        )
        warning = constant_regression_warning(metrics)
        if warning:
            logger.warning("%s: %s", self.prefix, warning)


def make_test_report(
    task: str,
    output_dir: str | os.PathLike,
    labels: Sequence[str],
    scale: TargetScale | None = None,
    calibration: Any = None,
    prefix: str = "test",
) -> Any:
    """The test-report handler of the task: :class:`~hcp_cam.reports.handlers.TestReportHandler`
    (classification) or :class:`RegressionReportHandler` (regression)."""
    if is_regression(task):
        return RegressionReportHandler(output_dir, scale, prefix=prefix, calibration=calibration)
    from hcp_cam.reports.handlers import TestReportHandler

    return TestReportHandler(output_dir, labels, prefix=prefix, calibration=calibration)
