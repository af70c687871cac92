"""benchmarks/bench_fa.py --smoke runs in a subprocess and writes the JSON keys it promises."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fa.py"


def test_bench_fa_smoke(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in (
        "machine",
        "versions",
        "sizes",
        "times_s",
        "median_s",
        "voxels_per_s",
        "ratio_dipy_over_torch",
        "max_abs_dfa_in_mask",
        "peak_rss_mib",
        "end_to_end_s",
    ):
        assert key in r, key
    assert set(r["versions"]) >= {"torch", "dipy", "monai", "numpy", "nibabel", "python"}
    assert r["sizes"]["n_mask_voxels"] > 0 and r["sizes"]["n_volumes"] > 6
    for k in ("decode", "torch", "dipy"):
        assert r["median_s"][k] > 0
    assert all(v > 0 for v in r["voxels_per_s"].values())
    assert math.isfinite(r["ratio_dipy_over_torch"]) and r["ratio_dipy_over_torch"] > 0
    assert 0 <= r["max_abs_dfa_in_mask"] < 1e-3  # the two backends agree on the benchmark volume
    assert r["end_to_end_s"]["total"] == r["median_s"]["decode"] + r["median_s"]["torch"]
    # the table comes last
    assert proc.stdout.strip().splitlines()[-1].startswith("speed ratio dipy/torch")
