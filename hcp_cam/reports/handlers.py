"""Ignite handlers that write a run's files and figures, beside the plots they draw.

- :class:`HistoryHandler` (trainer): one row per epoch in ``metrics/history.csv`` and, at the
  end, the seed's accuracy and loss curves as PNG.
- :class:`TestReportHandler` (evaluator): ``metrics/test_metrics.json``, per-subject and
  per-slice predictions as CSV, precision-recall, ROC and confusion-matrix PNGs.
- :class:`ImageGridHandler` (evaluator): a TensorBoard image grid of the first batch.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events

from hcp_cam.io import atomic_path, write_json_atomic
from hcp_cam.reports.plots import image_grid, plot_pr_roc_confusion, plot_training_curves
from hcp_cam.training.calibration import apply_calibration, balanced_accuracy, subject_scores
from hcp_cam.training.handlers import SliceCollector
from hcp_cam.training.metrics import (
    aggregate_by_subject,
    constant_prediction_warning,
    per_class_metrics,
    subject_and_slice_metrics,
)

__all__ = ["HistoryHandler", "TestReportHandler", "ImageGridHandler"]

logger = logging.getLogger(__name__)


class HistoryHandler:
    """One row per epoch of training and validation numbers in ``history.csv``; curves at the end.

    Args:
        out_dir: the run's ``metrics`` folder.
        evaluator: the validation evaluator whose ``state.metrics`` are recorded.
        figures_dir: where ``curves.png``, ``accuracy.png`` and ``loss.png`` go at the end.
    """

    def __init__(
        self, out_dir: str | os.PathLike, evaluator: Engine | None = None, figures_dir: str | None = None
    ):
        self.out_dir = Path(out_dir)
        self.evaluator = evaluator
        self.figures_dir = Path(figures_dir) if figures_dir else self.out_dir.parent / "figures"
        self._losses: list[float] = []

    @property
    def csv_path(self) -> Path:
        return self.out_dir / "history.csv"

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self._losses.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def _iteration(self, engine: Engine) -> None:
        out = engine.state.output
        rows = out if isinstance(out, list) else [out]
        loss = rows[0].get("loss") if rows and isinstance(rows[0], dict) else None
        if loss is not None:
            self._losses.append(float(loss))

    def epoch_completed(self, engine: Engine) -> None:
        row: dict[str, Any] = {"epoch": engine.state.epoch}
        row["train_loss"] = float(np.mean(self._losses)) if self._losses else math.nan
        for k, v in engine.state.metrics.items():
            row[k if k.startswith("train_") else f"train_{k}"] = _scalar(v)
        if self.evaluator is not None:
            for k, v in self.evaluator.state.metrics.items():
                row[k if k.startswith("val_") else f"val_{k}"] = _scalar(v)
        optimizer = getattr(engine, "optimizer", None)
        if optimizer is not None:
            row["lr"] = float(optimizer.param_groups[0]["lr"])
        history = pd.read_csv(self.csv_path) if self.csv_path.is_file() else pd.DataFrame()
        if not history.empty:
            # a resumed run rewrites the epochs it repeats
            history = history[history["epoch"] < row["epoch"]]
        history = pd.concat([history, pd.DataFrame([row])], ignore_index=True)
        with atomic_path(self.csv_path) as tmp:
            history.to_csv(tmp, index=False)

    def completed(self, engine: Engine) -> None:
        if not self.csv_path.is_file():
            return
        paths = plot_training_curves(self.csv_path, self.figures_dir)
        logger.info("training curves: %s", ", ".join(str(p) for p in paths))


def _scalar(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


class TestReportHandler:
    """Writes the test-set report when the evaluator completes.

    Files under ``output_dir``: ``metrics/test_metrics.json``, ``metrics/test_subject_predictions.csv``,
    ``metrics/test_slice_predictions.csv``, ``figures/test_pr.png``, ``test_roc.png``,
    ``test_confusion.png`` (names from :func:`hcp_cam.reports.plots.plot_pr_roc_confusion`).

    With ``calibration`` (a :class:`~hcp_cam.reports.calibration.ValidationFit` run on the validation
    subjects first) of two classes, the calibrated subject calls go beside the uncalibrated ones:
    ``calibrated_subject_accuracy``, ``calibrated_balanced_accuracy`` and the fit (``calibration``)
    in the metrics, ``calibrated_predicted``/``calibrated_correct`` columns in the subject table.
    With more than two classes the metrics add ``per_class`` (precision, recall, F1, one-vs-rest AUC).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        labels: Sequence[str],
        prefix: str = "test",
        calibration: Any = None,
    ):
        self.output_dir = Path(output_dir)
        self.labels = list(labels)
        self.prefix = prefix
        self.calibration = calibration
        self.collector = SliceCollector()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.collector.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collector.update)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def completed(self, engine: Engine) -> None:
        subjects, y, prob = self.collector.arrays()
        metrics = subject_and_slice_metrics(subjects, y, prob)
        metrics["labels"] = self.labels
        if prob.shape[1] > 2:
            _, y_c, p_c = aggregate_by_subject(subjects, y, prob)
            metrics["per_class"] = per_class_metrics(y_c, p_c, self.labels)
        calibrated = self._calibrated(subjects, y, prob)
        if calibrated is not None:
            metrics.update(calibrated[0])
        metrics_dir = self.output_dir / "metrics"
        write_json_atomic(metrics, metrics_dir / f"{self.prefix}_metrics.json")
        c = self.collector
        slice_df = pd.DataFrame(
            {"subject": c.subject, "acquisition": c.acquisition, "axis": c.axis, "index": c.index, "label": y}
        )
        for j, name in enumerate(self.labels):
            slice_df[f"prob_{name}"] = prob[:, j]
        slice_df["predicted"] = prob.argmax(1)
        with atomic_path(metrics_dir / f"{self.prefix}_slice_predictions.csv") as tmp:
            slice_df.to_csv(tmp, index=False)
        subj, y_s, prob_s = aggregate_by_subject(subjects, y, prob)
        subj_df = pd.DataFrame({"subject": subj, "label": y_s, "group": [self.labels[i] for i in y_s]})
        for j, name in enumerate(self.labels):
            subj_df[f"prob_{name}"] = prob_s[:, j]
        subj_df["predicted"] = prob_s.argmax(1)
        subj_df["predicted_group"] = [self.labels[i] for i in subj_df["predicted"]]
        subj_df["correct"] = subj_df["predicted"] == subj_df["label"]
        if calibrated is not None:
            subj_df["calibrated_predicted"] = calibrated[1]
            subj_df["calibrated_correct"] = subj_df["calibrated_predicted"] == subj_df["label"]
        with atomic_path(metrics_dir / f"{self.prefix}_subject_predictions.csv") as tmp:
            subj_df.to_csv(tmp, index=False)
        score = prob_s[:, 1] if prob_s.shape[1] == 2 else prob_s
        plot_pr_roc_confusion(
            y_s, score, prob_s.argmax(1), self.labels, self.output_dir / "figures", prefix=self.prefix
        )
        engine.state.metrics.update(
            {f"{self.prefix}_{k}": v for k, v in metrics.items() if isinstance(v, float)}
        )
        logger.info(
            "%s: subject accuracy %.3f (majority baseline %.3f), slice accuracy %.3f, AUC %.3f, %d subjects",
            self.prefix,
            metrics["subject_accuracy"],
            metrics["majority_baseline"],
            metrics["slice_accuracy"],
            metrics["roc_auc"],
            metrics["n_subjects"],
        )
        if calibrated is not None:
            logger.info(
                "%s: calibrated on the validation subjects (%s): subject accuracy %.3f, balanced accuracy %.3f",
                self.prefix,
                metrics["calibration"]["method"],
                metrics["calibrated_subject_accuracy"],
                metrics["calibrated_balanced_accuracy"],
            )
        warning = constant_prediction_warning(metrics)
        if warning:
            logger.warning("%s: %s", self.prefix, warning)

    def _calibrated(
        self, subjects: list[str], y: np.ndarray, prob: np.ndarray
    ) -> tuple[dict, np.ndarray] | None:
        """``(metrics, calls per subject)`` with the validation fit applied, or ``None`` without one."""
        fit = getattr(self.calibration, "result", None)
        if not fit or fit.get("method", "none") == "none" or prob.shape[1] != 2:
            return None
        _, y_s, p_s, z_s = subject_scores(subjects, y, prob, np.concatenate(self.collector.logits))
        calls, _ = apply_calibration(fit, p_s, z_s)
        metrics = {
            "calibrated_subject_accuracy": float((calls == y_s).mean()),
            "calibrated_balanced_accuracy": balanced_accuracy(y_s, calls),
            "calibrated_constant_predictions": bool(np.unique(calls).size == 1),
            "calibration": dict(fit),
        }
        return metrics, calls


class ImageGridHandler:
    """Adds a grid of the first validation batch's input images to TensorBoard every epoch.

    Args:
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter``.
        trainer: whose epoch numbers the images are logged at.
        max_images: how many images of the batch the grid shows.
    """

    def __init__(
        self,
        summary_writer: Any,
        trainer: Engine | None = None,
        max_images: int = 16,
        tag: str = "val_inputs",
    ):
        self.writer = summary_writer
        self.trainer = trainer
        self.max_images = max_images
        self.tag = tag

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=1), self._log)

    def _log(self, engine: Engine) -> None:
        out = engine.state.output
        rows = out if isinstance(out, list) else [out]
        images = [torch.as_tensor(r["image"]).detach().cpu() for r in rows[: self.max_images]]
        if not images or images[0].ndim != 3:  # 2D slices only: (1, H, W)
            return
        grid = image_grid(torch.stack(images).numpy(), nrow=int(math.ceil(math.sqrt(len(images)))))
        step = self.trainer.state.epoch if self.trainer is not None else engine.state.epoch
        self.writer.add_image(self.tag, grid, step)
