"""benchmarks/bench_train.py --smoke runs in a subprocess and writes the JSON keys it promises."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_bench_train_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run("--smoke", "--arch", "alexnet", "--device", "cpu", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert set(r) >= {"machine", "versions", "settings", "results"}
    assert set(r["versions"]) >= {"python", "torch", "monai", "numpy"}
    assert r["machine"]["device"] == "cpu" and r["settings"]["smoke"] is True
    (res,) = r["results"]
    assert res["arch"] == "alexnet" and res["n_items"] > 0
    for key in ("pipeline", "model_only", "data_only", "device_pipeline", "device_data_only"):
        assert len(res["times_s"][key]) == r["settings"]["repeats"]
        assert res["median_s"][key] > 0 and res["slices_per_s"][key] > 0
    rate = res["slices_per_s"]
    assert math.isclose(res["efficiency"], rate["pipeline"] / rate["model_only"], rel_tol=1e-9)
    assert math.isclose(res["device_efficiency"], rate["device_pipeline"] / rate["model_only"], rel_tol=1e-9)
    assert r["settings"]["pipelines"] == ["monai", "device"] and r["settings"]["use_amp"] is False
    # the table comes last, one row per network and pipeline: monai, then device
    monai_row, device_row = (line.split() for line in proc.stdout.strip().splitlines()[-2:])
    assert monai_row[:3] == ["alexnet", "32", "monai"] and float(monai_row[-1]) == round(res["efficiency"], 2)
    assert device_row[:3] == ["alexnet", "32", "device"]
    assert float(device_row[-1]) == round(res["device_efficiency"], 2)


def test_bench_train_device_pipeline_only(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run("--smoke", "--pipelines", "device", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (res,) = json.loads(out.read_text())["results"]
    assert set(res["slices_per_s"]) == {"model_only", "device_pipeline", "device_data_only"}
    assert "efficiency" not in res and res["device_efficiency"] > 0


def _bench_train():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_train
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return bench_train


def test_bench_train_rejects_unknown_arch(capsys):
    with pytest.raises(SystemExit) as exc:
        _bench_train().parse_args(["--smoke", "--arch", "resnet9000"])
    assert exc.value.code == 2 and "unknown --arch" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [(["--pipelines", "dali"], "--pipelines"), (["--amp", "on", "--device", "cpu"], "--amp on needs")],
)
def test_bench_train_rejects_bad_pipeline_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _bench_train().parse_args(["--smoke", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_bench_train_auto_amp_and_channels_last_follow_the_device():
    bench = _bench_train()
    cpu = bench.parse_args(["--smoke"])
    assert cpu.use_amp is False and cpu.use_channels_last is False and cpu.pipelines == ["monai", "device"]
    cuda = bench.parse_args(["--smoke", "--device", "cuda", "--pipelines", "device"])  # parsing needs no GPU
    assert cuda.use_amp is True and cuda.use_channels_last is True and cuda.pipelines == ["device"]


def test_train_chain_without_meta_tracking_gives_the_same_slices():
    """What the benchmark's --no-track-meta (the recommended bundle change) relies on: the train
    augmentations draw the same numbers and give the same pixels without MetaTensor tracking."""
    import torch
    from monai.data import MetaTensor, set_track_meta

    from hcp_cam.training.data import build_transforms

    items = _bench_train().make_items(n_subjects=1, k=2, seed=3)
    out = {}
    for track in (True, False):
        set_track_meta(track)
        try:
            train, _ = build_transforms(spatial_dims=2, image_size=24)
            train.set_random_state(seed=5)
            out[track] = [train(dict(it)) for it in items for _ in range(3)]
        finally:
            set_track_meta(True)
    assert isinstance(out[True][0]["image"], MetaTensor) and not isinstance(
        out[False][0]["image"], MetaTensor
    )
    images = [torch.stack([o["image"].as_subclass(torch.Tensor) for o in out[t]]) for t in (True, False)]
    assert images[0].shape == (len(items) * 3, 1, 24, 24)
    assert images[0].std() > 0 and not torch.equal(images[0][0], images[0][1])  # augmented, not constant
    assert torch.equal(images[0], images[1])
