"""Two-process data-parallel training on CPU (gloo): ``torchrun ... multi_gpu_train.json``."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from bundle_helpers import REPO_ROOT, batch_recorder_overlay, output_of, run_bundle

TESTS_DIR = Path(__file__).resolve().parent


def _records(path: Path) -> dict[int, list[str]]:
    per_epoch: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        per_epoch.setdefault(row["epoch"], []).extend(row["keys"])
    return per_epoch


# `monai`: DistributedSampler over the CacheDataset; `device`: DeviceBatchLoader sharding the slice cache
@pytest.mark.parametrize("pipeline", ["monai", "device"])
def test_two_rank_training_on_cpu_splits_the_data_and_saves_once(pipeline, tiny_data, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    out = tmp_path / "run"
    record_dir = tmp_path / "batches"
    overlay = batch_recorder_overlay(
        tmp_path / "record_batches.json",
        record_dir,
        REPO_ROOT / "bundles/cam_dmri/configs/train.json",
    )
    configs = [
        str(REPO_ROOT / "bundles/cam_dmri/configs/train.json"),
        str(REPO_ROOT / "bundles/cam_dmri/configs/multi_gpu_train.json"),
        str(overlay),
    ]
    # run from an empty folder: nothing may land beside the output folder (rank 1's MONAI
    # TensorBoard handlers once opened their own writers under ./runs)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_bundle(
        "training",
        configs,
        out,
        tiny_data,
        {"data_pipeline": pipeline},
        launcher=[torchrun, "--standalone", "--nproc_per_node=2"],
        cwd=cwd,
        env={"PYTHONPATH": f"{REPO_ROOT}:{TESTS_DIR}"},
        timeout=300,
    )
    text = output_of(proc)
    assert proc.returncode == 0, text[-4000:]
    assert json.loads((out / "config.json").read_text())["data_pipeline"] == pipeline
    assert f"data pipeline: {pipeline}" in text, text[-4000:]

    ranks = {r: _records(record_dir / f"batches_rank{r}.jsonl") for r in (0, 1)}
    train_subjects = {e["subject"] for e in json.loads((out / "datalist.json").read_text())["training"]}
    for epoch in (1, 2):
        a, b = ranks[0][epoch], ranks[1][epoch]
        assert a and len(a) == len(b), (epoch, len(a), len(b))
        assert len(set(a)) == len(a) and len(set(b)) == len(b)
        assert not set(a) & set(b), f"epoch {epoch}: both ranks trained on {sorted(set(a) & set(b))[:5]}"
        assert {k.split("/")[0] for k in a + b} <= train_subjects
    # both reshuffle every epoch
    assert ranks[0][1] != ranks[0][2]

    ckpts = sorted(p.name for p in (out / "checkpoints").glob("checkpoint_epoch=*.pt"))
    assert ckpts == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    # only rank 0 saves: one "Saved checkpoint" line per epoch, not one per rank
    saved = re.findall(r"SupervisedTrainer - INFO - Saved checkpoint at epoch: (\d+)", text)
    assert sorted(saved) == ["1", "2"], saved
    assert (out / "checkpoints" / "model.pt").is_file()
    # one TensorBoard writer (rank 0's), not an empty events file per rank
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert not list(cwd.rglob("*")), sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
    history = pd.read_csv(out / "metrics" / "history.csv")
    assert list(history["epoch"]) == [1, 2]
