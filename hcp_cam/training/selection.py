"""Which epoch's weights become ``model.pt``: the bundle key ``best_metric``.

By default a classifier keeps the epoch of the best validation *slice* accuracy (ignite's key metric,
as the bundle always did). With a few validation subjects the number that matters is per subject, so
``best_metric`` may name a subject-level metric instead:

============================  ===============================  ===========================
``best_metric``               engine metric                    better
============================  ===============================  ===========================
``slice_accuracy``            ``val_accuracy``                 higher (classification default)
``subject_accuracy``          ``val_subject_accuracy``         higher
``subject_auc``               ``val_roc_auc``                  higher
``subject_balanced_accuracy`` ``val_balanced_accuracy``        higher
``subject_mae``               ``val_subject_mae``              lower (regression default)
``slice_mae``                 ``val_mae``                      lower
============================  ===============================  ===========================

Ties and early epochs: a subject-level metric over 4-8 validation subjects takes few values and
saturates early (an AUC of 1.0 from epoch 2 on is common), and ignite's ``Checkpoint`` keeps the
*first* epoch of a tie, so a barely trained network would be kept. :class:`SelectionScore` therefore
breaks a tie by the validation loss (lower wins: among the epochs that rank or call the subjects
equally well, the one whose slice outputs fit best), and an exact tie of both by the later epoch.
It writes ``val_selection_score``, a count that rises by one at each new best epoch (and is half a
step below the current count otherwise), which the checkpoint saver and early stopping compare.
A NaN metric (e.g. an AUC with one class present) never beats a number.

Limits: after ``resume`` the count starts again, and so does the saver's memory of its best score
(as for the default key metric), so the first resumed epoch writes ``model.pt``; under
``multi_gpu_train.json`` the subject-level metrics exist on rank 0 only, so early stopping
(``early_stop_patience``) by a subject-level ``best_metric`` is not available there.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ignite.engine import Engine, Events

from hcp_cam.errors import ConfigError
from hcp_cam.training.tasks import check_task

__all__ = [
    "BEST_METRICS",
    "SELECTION_KEY",
    "resolve_best_metric",
    "checkpoint_key",
    "early_stop_metric",
    "SelectionScore",
]

logger = logging.getLogger(__name__)

#: task -> best_metric name -> (engine metric, higher is better); the first is the task's default
BEST_METRICS: dict[str, dict[str, tuple[str, bool]]] = {
    "classification": {
        "slice_accuracy": ("val_accuracy", True),
        "subject_accuracy": ("val_subject_accuracy", True),
        "subject_auc": ("val_roc_auc", True),
        "subject_balanced_accuracy": ("val_balanced_accuracy", True),
    },
    "regression": {
        "subject_mae": ("val_subject_mae", False),
        "slice_mae": ("val_mae", False),
    },
}
SELECTION_KEY = "val_selection_score"
_TIE_BREAK = "val_loss"


def resolve_best_metric(task: str, best_metric: str | None = "auto") -> str:
    """The ``best_metric`` of a run: ``auto``/``None`` is the task's default (``slice_accuracy`` for
    classification, ``subject_mae`` for regression).

    Raises:
        ConfigError: a name that the task has not (the message lists the task's names).
    """
    task = check_task(task)
    choices = BEST_METRICS[task]
    if best_metric is None or str(best_metric).strip().lower() in ("auto", "", "null", "none"):
        return next(iter(choices))
    name = str(best_metric).strip().lower()
    if name not in choices:
        raise ConfigError(
            f"best_metric for task {task} must be auto or one of {', '.join(choices)}; got {best_metric!r}"
        )
    return name


def checkpoint_key(task: str, best_metric: str | None = "auto") -> str | None:
    """The metric the best-model saver compares: ``None`` (the evaluator's own key metric, validation
    slice accuracy) for the classification default, :data:`SELECTION_KEY` otherwise."""
    name = resolve_best_metric(task, best_metric)
    return None if name == "slice_accuracy" else SELECTION_KEY


def early_stop_metric(task: str, best_metric: str | None = "auto") -> str:
    """The metric early stopping watches: the same as the checkpoint's (``val_accuracy`` by default)."""
    return checkpoint_key(task, best_metric) or "val_accuracy"


class SelectionScore:
    """Writes ``val_selection_score`` after each validation: the best-epoch count (see the module).

    Attach it to the evaluator after the handlers that compute the metric (subject metrics) and
    before the checkpoint saver. Inert for the classification default (``slice_accuracy``), so
    that such a run's files are those of a run without it.

    Args:
        task: ``classification`` or ``regression``.
        best_metric: see :func:`resolve_best_metric`.
        tie_break: the metric that decides a tie (lower wins).
    """

    def __init__(self, task: str, best_metric: str | None = "auto", tie_break: str = _TIE_BREAK) -> None:
        task = check_task(task)
        self.name = resolve_best_metric(task, best_metric)
        self.metric, self.higher = BEST_METRICS[task][self.name]
        self.tie_break = tie_break
        self.active = checkpoint_key(task, self.name) is not None
        self.count = 0
        self.best: tuple[float, float] | None = None
        self.best_epoch: int | None = None

    def attach(self, engine: Engine) -> None:
        if self.active:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.completed)

    def _key(self, metrics: dict[str, Any]) -> tuple[float, float]:
        """``(primary, secondary)``, both oriented so that larger is better; NaN -> -inf."""
        primary = _number(metrics.get(self.metric))
        secondary = _number(metrics.get(self.tie_break))
        primary = primary if self.higher else -primary
        return (
            -math.inf if math.isnan(primary) else primary,
            -math.inf if math.isnan(secondary) else -secondary,
        )

    def completed(self, engine: Engine) -> None:
        if self.metric not in engine.state.metrics:
            raise ConfigError(
                f"best_metric {self.name!r} needs the validation metric {self.metric!r}, which this run does not "
                f"compute (metrics: {sorted(engine.state.metrics)})"
            )
        key = self._key(engine.state.metrics)
        # >= : an exact tie of both goes to the later epoch
        if self.best is None or key >= self.best:
            self.best, self.count = key, self.count + 1
            self.best_epoch = int(engine.state.epoch)  # MONAI's evaluator runs at the trainer's epoch
            score = float(self.count)
            logger.info(
                "best epoch so far by %s: %s (%s %.4g)", self.name, self.best_epoch, self.metric,
                _number(engine.state.metrics.get(self.metric)),
            )  # fmt: skip
        else:
            score = self.count - 0.5
        engine.state.metrics[SELECTION_KEY] = score


def _number(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v
