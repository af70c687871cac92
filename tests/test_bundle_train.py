"""The bundle's ``training`` run, as the user types it, on a tiny synthetic dataset (CPU)."""

from __future__ import annotations

import json

import pandas as pd
import torch
from bundle_helpers import BUNDLE, output_of, run_bundle

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_subject_accuracy",
    "val_roc_auc",
    "val_prediction_spread",
)


def test_training_writes_checkpoints_history_figures_and_datalist(trained_run):
    out, proc = trained_run
    assert proc.returncode == 0, output_of(proc)[-4000:]
    ckpt = out / "checkpoints"
    assert (ckpt / "model.pt").is_file()
    # n_saved=2: the last two epochs' full checkpoints stay (one survives a kill during a save)
    names = sorted(p.name for p in ckpt.glob("checkpoint_epoch=*.pt"))
    assert names == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    assert not [p.name for p in ckpt.iterdir() if p.name.startswith("tmp")], "temporary files left"
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())
    history = pd.read_csv(out / "metrics" / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    assert not missing, f"history.csv lacks {missing}: {list(history.columns)}"
    assert history[list(HISTORY_COLUMNS)].notna().all().all(), history
    assert ((history["val_accuracy"] >= 0) & (history["val_accuracy"] <= 1)).all()
    assert (out / "figures" / "curves.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "alexnet" and config["image_size"] == 48 and config["epochs"] == 2


def test_datalist_splits_are_disjoint_by_subject(trained_run, tiny_data):
    out, proc = trained_run
    assert proc.returncode == 0, output_of(proc)[-4000:]
    datalist = json.loads((out / "datalist.json").read_text())
    splits = {s: {e["subject"] for e in datalist[s]} for s in ("training", "validation", "test")}
    assert all(splits.values()), {s: len(v) for s, v in splits.items()}
    assert not splits["training"] & splits["validation"]
    assert not splits["training"] & splits["test"]
    assert not splits["validation"] & splits["test"]
    table = pd.read_csv(tiny_data.dataset_dir / "participants.csv", dtype={"subject": str})
    assert set().union(*splits.values()) == set(table["subject"])
    # every split holds both age groups
    for s in ("training", "validation", "test"):
        assert {e["label"] for e in datalist[s]} == {0, 1}, s


def test_user_command_through_symlink_from_repo_root_is_deterministic(trained_run, tiny_data, tmp_path):
    """``--config_file bundles/cam_dmri/train.json`` (the symlink, relative to the repository root)
    gives the same run as the absolute ``configs/train.json``: same seed, same numbers."""
    first, first_proc = trained_run
    assert first_proc.returncode == 0, output_of(first_proc)[-4000:]
    assert (BUNDLE / "train.json").is_symlink()
    out = tmp_path / "again"
    proc = run_bundle("training", "bundles/cam_dmri/train.json", out, tiny_data)
    assert proc.returncode == 0, output_of(proc)[-4000:]
    a = pd.read_csv(first / "metrics" / "history.csv")
    b = pd.read_csv(out / "metrics" / "history.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    wa = torch.load(first / "checkpoints" / "model.pt", map_location="cpu", weights_only=True)
    wb = torch.load(out / "checkpoints" / "model.pt", map_location="cpu", weights_only=True)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
