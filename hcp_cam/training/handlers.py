"""Ignite handlers of training: what the engines compute, before anything is written or plotted.

- :func:`stack_output`: MONAI's decollated engine output back into ``(pred, label)`` tensors.
- :class:`SliceCollector`: per-slice probabilities, labels and ids over one evaluation.
- :class:`SubjectMetricsHandler` (evaluator): slice probabilities aggregated per subject, the
  number that matters for a person, written into ``engine.state.metrics``.

The handlers that write files and figures (history, test report, image grid) are in
:mod:`hcp_cam.reports.handlers`, beside the plots they draw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from hcp_cam.training.metrics import constant_prediction_warning, subject_and_slice_metrics

__all__ = ["stack_output", "SliceCollector", "SubjectMetricsHandler"]

logger = logging.getLogger(__name__)


def stack_output(keys: Sequence[str] = ("pred", "label")) -> Callable[[Any], tuple[torch.Tensor, ...]]:
    """An ignite ``output_transform`` that stacks MONAI's decollated outputs back into tensors:
    ``pred`` ``(B, C)`` logits and ``label`` ``(B,)`` class indices (long)."""

    def _transform(output: Any) -> tuple[torch.Tensor, ...]:
        rows = output if isinstance(output, list) else [output]
        out = []
        for k in keys:
            values = [torch.as_tensor(r[k]) for r in rows]
            t = torch.stack(values) if values[0].ndim > 0 or len(rows) > 1 else values[0]
            if k == "label":
                t = t.reshape(-1).long()
            out.append(t)
        return tuple(out)

    return _transform


class SliceCollector:
    """Collects, per iteration, softmax probabilities, labels and subject/acquisition ids."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prob: list[np.ndarray] = []
        self.logits: list[np.ndarray] = []
        self.label: list[np.ndarray] = []
        self.subject: list[str] = []
        self.acquisition: list[str] = []
        self.axis: list[int] = []
        self.index: list[int] = []

    def update(self, engine: Engine) -> None:
        pred, label = stack_output(("pred", "label"))(engine.state.output)
        self.prob.append(torch.softmax(pred.detach().float(), dim=1).cpu().numpy())
        self.logits.append(pred.detach().float().cpu().numpy())  # for calibration (reports.calibration)
        self.label.append(label.cpu().numpy())
        batch = engine.state.batch
        rows = batch if isinstance(batch, list) else _decollate_ids(batch)
        for r in rows:
            self.subject.append(str(r["subject"]))
            self.acquisition.append(str(r.get("acquisition", "")))
            self.axis.append(int(r.get("axis", -1)))
            self.index.append(int(r.get("index", -1)))

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        if not self.prob:
            return [], np.zeros(0, dtype=int), np.zeros((0, 0))
        return self.subject, np.concatenate(self.label), np.concatenate(self.prob)


def _decollate_ids(batch: dict) -> list[dict]:
    n = len(batch["subject"])
    return [
        {k: _item(batch[k], i) for k in ("subject", "acquisition", "axis", "index") if k in batch}
        for i in range(n)
    ]


def _item(v: Any, i: int) -> Any:
    x = v[i]
    return x.item() if isinstance(x, torch.Tensor) else x


class SubjectMetricsHandler:
    """Adds subject-level metrics to ``engine.state.metrics`` at the end of each evaluation.

    Attach it to the evaluator *before* handlers that read the metrics (stats, checkpoints).
    Keys (with ``prefix``): ``subject_accuracy``, ``roc_auc`` (subject level), ``slice_roc_auc``,
    ``precision``, ``recall``, ``f1``, ``majority_baseline``, ``prediction_spread``,
    ``n_subjects``, ``n_slices``. A warning is logged when every subject gets the same prediction.
    """

    def __init__(self, prefix: str = "val_") -> None:
        self.prefix = prefix
        self.collector = SliceCollector()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.collector.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collector.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.completed)

    def completed(self, engine: Engine) -> None:
        subjects, y, prob = self.collector.arrays()
        if not subjects:
            return
        m = subject_and_slice_metrics(subjects, y, prob)
        warning = constant_prediction_warning(m)
        if warning:
            logger.warning(warning)
        skip = {"slice_accuracy", "constant_predictions"}
        for k, v in m.items():
            if k not in skip and isinstance(v, (int, float, np.floating, np.integer)):
                engine.state.metrics[f"{self.prefix}{k}"] = float(v)
