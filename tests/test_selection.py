"""Best-epoch selection by a subject-level metric: ties by validation loss, NaN never wins."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events

from hcp_cam.errors import ConfigError
from hcp_cam.training.checkpoints import AtomicCheckpointSaver
from hcp_cam.training.selection import (
    SELECTION_KEY,
    SelectionScore,
    checkpoint_key,
    early_stop_metric,
    resolve_best_metric,
)


def _validate(epochs: list[dict], handler: SelectionScore, saver_dir=None) -> tuple[list[float], Engine]:
    """Run an ignite engine one epoch per entry of ``epochs`` (its metrics), recording the scores."""
    engine = Engine(lambda e, b: None)
    scores: list[float] = []

    @engine.on(Events.EPOCH_STARTED)
    def _metrics(e):
        e.state.metrics = dict(epochs[e.state.epoch - 1])

    handler.attach(engine)
    net = torch.nn.Linear(1, 1)
    if saver_dir is not None:

        @engine.on(Events.EPOCH_COMPLETED)
        def _weights(e):  # the epoch number in the weights, to read back which was kept
            with torch.no_grad():
                net.bias.fill_(float(e.state.epoch))

        AtomicCheckpointSaver(
            save_dir=str(saver_dir), save_dict={"model": net}, save_key_metric=True,
            key_metric_name=SELECTION_KEY, key_metric_filename="model.pt",
        ).attach(engine)  # fmt: skip
    engine.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: scores.append(e.state.metrics.get(SELECTION_KEY))
    )
    engine.run([0], max_epochs=len(epochs))
    return scores, engine


def test_a_saturated_auc_is_decided_by_the_validation_loss(tmp_path):
    epochs = [
        {"val_roc_auc": 0.75, "val_loss": 0.69},
        {"val_roc_auc": 1.0, "val_loss": 0.68},  # AUC saturates early...
        {"val_roc_auc": 1.0, "val_loss": 0.40},  # ...the better-fitted tie wins
        {"val_roc_auc": 1.0, "val_loss": 0.55},
        {"val_roc_auc": 0.9, "val_loss": 0.20},  # a lower AUC never wins on loss
    ]
    handler = SelectionScore("classification", "subject_auc")
    scores, _ = _validate(epochs, handler, saver_dir=tmp_path)
    assert scores == [1.0, 2.0, 3.0, 2.5, 2.5]
    assert handler.best_epoch == 3
    kept = torch.load(tmp_path / "model.pt", weights_only=True)
    assert float(kept["bias"]) == 3.0  # the saver kept epoch 3, not the first epoch of the tie


def test_lower_mae_wins_exact_ties_go_to_the_later_epoch_and_nan_never_wins():
    epochs = [
        {"val_subject_mae": math.nan, "val_loss": 0.1},
        {"val_subject_mae": 9.0, "val_loss": 0.8},
        {"val_subject_mae": 7.0, "val_loss": 0.8},
        {"val_subject_mae": 7.0, "val_loss": 0.8},
        {"val_subject_mae": 8.0, "val_loss": 0.1},
    ]
    handler = SelectionScore("regression", "auto")
    scores, _ = _validate(epochs, handler)
    assert scores == [1.0, 2.0, 3.0, 4.0, 3.5]
    assert handler.best_epoch == 4


def test_the_classification_default_is_inert():
    handler = SelectionScore("classification", "auto")
    scores, engine = _validate([{"val_accuracy": 0.5}, {"val_accuracy": 0.7}], handler)
    assert scores == [None, None] and SELECTION_KEY not in engine.state.metrics
    assert checkpoint_key("classification", "auto") is None  # the evaluator's key metric, as before
    assert early_stop_metric("classification", None) == "val_accuracy"
    assert (
        checkpoint_key("regression", "auto") == SELECTION_KEY == early_stop_metric("regression", "slice_mae")
    )


def test_names_are_checked_per_task():
    assert resolve_best_metric("regression", "auto") == "subject_mae"
    assert resolve_best_metric("classification", "Subject_AUC") == "subject_auc"
    with pytest.raises(ConfigError, match="subject_mae, slice_mae"):
        resolve_best_metric("regression", "subject_auc")
    with pytest.raises(ConfigError, match="classification, regression"):
        resolve_best_metric("segmentation", "auto")
    with pytest.raises(ConfigError, match="val_balanced_accuracy"):
        _validate([{"val_loss": 0.5}], SelectionScore("classification", "subject_balanced_accuracy"))
