"""The CAM benchmark runs end to end in smoke mode and writes its JSON (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_cam_smoke(tmp_path):
    out = tmp_path / "bench" / "cam.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_cam.py"),
            "--smoke",
            "--volume",
            "hcp",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result) >= {"config", "machine", "versions", "median_s", "timings_s", "ratio_cam_forward"}
    assert set(result["median_s"]) == {"forward", "cam", "gradcam_monai"}
    assert all(len(v) == result["config"]["repeats"] == 2 for v in result["timings_s"].values())
    assert all(t > 0 for t in result["median_s"].values())
    assert result["ratio_cam_forward"] == result["median_s"]["cam"] / result["median_s"]["forward"]
    assert {"torch", "monai", "python"} <= set(result["versions"]) and result["config"]["smoke"] is True
    assert isinstance(result["meets_target"], bool)
    vol = result["volume"]  # smoke: a small grid in place of hcp
    assert vol["shape"] == [20, 24, 20] and vol["slices"] > 0 and vol["repeats"] == 1
    assert set(vol["median_s"]) == {"volume_cam", "volume_cam_per_slice", "volume_network"}
    assert vol["speedup_batched"] == vol["median_s"]["volume_cam_per_slice"] / vol["median_s"]["volume_cam"]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("CAM/forward") and lines[-2].startswith("whole brain 20x24x20")  # table last
    assert not [p for p in out.parent.iterdir() if p.name != "cam.json"]  # no temporary file left
