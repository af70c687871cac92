"""Resuming a bundle training run: after SIGKILL mid-training, and refusing a corrupt checkpoint."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
from bundle_helpers import CONFIGS, bundle_args, bundle_env, output_of, run_bundle, tree_snapshot

EPOCHS = 4


def _start_training(out, data, log_path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        str(CONFIGS / "train.json"),
    ]
    cmd += bundle_args(out, data, {"epochs": EPOCHS})
    with open(log_path, "w") as log:
        return subprocess.Popen(cmd, env=bundle_env(), stdout=log, stderr=subprocess.STDOUT)


def test_resume_after_sigkill_finishes_every_epoch_once(tiny_data, tmp_path):
    out = tmp_path / "run"
    first = _start_training(out, tiny_data, tmp_path / "first.log")
    target = out / "checkpoints" / "checkpoint_epoch=2.pt"
    deadline = time.monotonic() + 240
    try:
        while not target.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        alive = first.poll() is None
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=60)
    log = (tmp_path / "first.log").read_text()
    assert target.exists(), log[-4000:]
    assert alive, "the run finished before it could be killed: nothing was resumed\n" + log[-2000:]
    assert first.returncode == -signal.SIGKILL
    before = pd.read_csv(out / "metrics" / "history.csv")
    assert before["epoch"].max() < EPOCHS

    proc = run_bundle("training", CONFIGS / "train.json", out, tiny_data, {"epochs": EPOCHS, "resume": True})
    text = output_of(proc)
    assert proc.returncode == 0, text[-4000:]
    history = pd.read_csv(out / "metrics" / "history.csv")
    assert list(history["epoch"]) == list(range(1, EPOCHS + 1)), history
    m = re.search(r"resume: continuing from \S*checkpoint_epoch=(\d+)\.pt", text)
    assert m, text[-4000:]
    resumed_from = int(m.group(1))
    # at most one epoch is lost: the one that was running when the process was killed
    assert resumed_from >= max(2, int(before["epoch"].max()) - 1)
    # the restarted trainer ran only the epochs after the checkpoint (ignite logs each one)
    ran = [int(e) for e in re.findall(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete", text)]
    assert ran == list(range(resumed_from + 1, EPOCHS + 1)), ran
    # a restarted saver does not know the files of the killed run, so those stay beside the new ones
    epochs = sorted(int(p.stem.split("=")[1]) for p in (out / "checkpoints").glob("checkpoint_epoch=*.pt"))
    assert epochs[-1] == EPOCHS and EPOCHS - 1 in epochs, epochs


def test_corrupt_checkpoint_on_resume_is_refused_and_left_as_is(trained_run, tiny_data, tmp_path):
    src, train_proc = trained_run
    assert train_proc.returncode == 0, output_of(train_proc)[-4000:]
    out = tmp_path / "run"
    shutil.copytree(src, out)
    ckpt = out / "checkpoints" / "checkpoint_epoch=2.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 3])
    before = tree_snapshot(out / "checkpoints")
    history = (out / "metrics" / "history.csv").read_bytes()

    proc = run_bundle("training", CONFIGS / "train.json", out, tiny_data, {"resume": True})
    text = output_of(proc)
    assert proc.returncode != 0, text[-4000:]
    assert str(ckpt) in text and "corrupt" in text, text[-4000:]
    assert tree_snapshot(out / "checkpoints") == before  # same files, same bytes
    assert (out / "metrics" / "history.csv").read_bytes() == history


def test_resume_restores_the_optimizer_state_of_the_checkpoint(trained_run, tiny_data, tmp_path):
    """The bundle's resume wiring hands the optimizer (and scheduler) to the loader, not only the
    trainer: Adam's step count goes on from the checkpoint's, where a fresh optimizer would restart
    it at 0, and its moments are the checkpoint's where the first resumed epoch starts from them."""
    import torch

    src, train_proc = trained_run
    assert train_proc.returncode == 0, output_of(train_proc)[-4000:]
    out = tmp_path / "run"
    shutil.copytree(src, out)
    saved = torch.load(out / "checkpoints" / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=True)
    per_epoch = saved["trainer"]["epoch_length"]  # ignite keeps the iteration, not the epoch
    assert saved["trainer"]["iteration"] == 2 * per_epoch and per_epoch >= 1
    assert {float(s["step"]) for s in saved["optimizer"]["state"].values()} == {2.0 * per_epoch}

    proc = run_bundle("training", CONFIGS / "train.json", out, tiny_data, {"epochs": 3, "resume": True})
    text = output_of(proc)
    assert proc.returncode == 0, text[-4000:]
    assert re.search(r"resume: continuing from \S*checkpoint_epoch=2\.pt", text), text[-4000:]
    after = torch.load(out / "checkpoints" / "checkpoint_epoch=3.pt", map_location="cpu", weights_only=True)
    assert after["trainer"]["iteration"] == 3 * per_epoch
    steps = {float(s["step"]) for s in after["optimizer"]["state"].values()}
    assert steps == {3.0 * per_epoch}, f"optimizer restarted: steps {steps}, expected {3 * per_epoch}"
    assert set(after["optimizer"]["state"]) == set(saved["optimizer"]["state"])
    # the scheduler went on too: its epoch counter and the learning rate it set
    assert after["lr_scheduler"]["last_epoch"] == saved["lr_scheduler"]["last_epoch"] + 1 == 3
