"""The bundle's ``training`` with ``--data_pipeline device`` (slices cached on the device, batched
augmentation) on CPU: it trains, validates with the subject-level metrics, resumes, and the model
it saves evaluates with the bundle's ``evaluating``."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from bundle_helpers import CONFIGS, EVALUATE, output_of, run_bundle
from test_bundle_train import HISTORY_COLUMNS


@pytest.fixture(scope="module")
def device_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("device_pipeline") / "run"
    return out, run_bundle("training", CONFIGS / "train.json", out, tiny_data, {"data_pipeline": "device"})


def test_device_pipeline_trains_validates_and_saves(device_run):
    out, proc = device_run
    text = output_of(proc)
    assert proc.returncode == 0, text[-4000:]
    assert "data pipeline: device" in text and "slice cache:" in text, text[-4000:]
    config = json.loads((out / "config.json").read_text())
    assert config["data_pipeline"] == "device" and config["amp"] is False and config["channels_last"] is False
    assert (out / "checkpoints" / "model.pt").is_file()
    weights = torch.load(out / "checkpoints" / "model.pt", map_location="cpu", weights_only=True)
    assert weights and all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    history = pd.read_csv(out / "metrics" / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert history[list(HISTORY_COLUMNS)].notna().all().all(), history
    # every validation slice of every validation subject went through the subject-level metrics
    datalist = json.loads((out / "datalist.json").read_text())
    assert (history["val_n_subjects"] == len(datalist["validation"])).all()
    # batch 16, drop_last: each epoch ran (training slices) // 16 steps, 3 axes x 4 slices per acquisition
    state = torch.load(out / "checkpoints" / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    n_slices = 3 * 4 * len(datalist["training"])
    assert state["trainer"]["epoch_length"] == n_slices // 16
    assert state["trainer"]["iteration"] == 2 * (n_slices // 16)


def test_device_trained_model_evaluates_and_the_run_resumes(device_run, tiny_data):
    out, proc = device_run
    assert proc.returncode == 0, output_of(proc)[-4000:]
    evaluated = run_bundle("evaluating", EVALUATE, out, tiny_data)
    assert evaluated.returncode == 0, output_of(evaluated)[-4000:]
    metrics = json.loads((out / "metrics" / "test_metrics.json").read_text())
    test_subjects = {e["subject"] for e in json.loads((out / "datalist.json").read_text())["test"]}
    assert metrics["n_subjects"] == len(test_subjects) and 0.0 <= metrics["subject_accuracy"] <= 1.0

    resumed = run_bundle(
        "training",
        CONFIGS / "train.json",
        out,
        tiny_data,
        {"data_pipeline": "device", "epochs": 3, "resume": True},
    )
    text = output_of(resumed)
    assert resumed.returncode == 0, text[-4000:]
    assert re.search(r"resume: continuing from \S*checkpoint_epoch=2\.pt", text), text[-4000:]
    ran = [int(e) for e in re.findall(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete", text)]
    assert ran == [3], ran
    assert list(pd.read_csv(out / "metrics" / "history.csv")["epoch"]) == [1, 2, 3]
