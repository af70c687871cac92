"""benchmarks/bench_group.py --smoke runs in a subprocess and writes the JSON keys it promises."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_group.py"


def test_bench_group_smoke(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--threads", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert set(r) == {"machine", "versions", "sizes", "registration", "permutation"}
    assert set(r["versions"]) >= {"SimpleITK", "numpy", "python"}
    assert r["machine"]["sitk_threads"] == 1
    reg = r["registration"]
    for method in ("affine", "bspline", "demons"):
        assert reg[method]["median_s"] > 0 and len(reg[method]["seconds"]) == 1
        assert min(reg[method]["correlation"]) > 0.85  # the registrations timed are real ones
    assert reg["affine"]["ratio_to_affine"] == 1.0 and reg["bspline"]["ratio_to_affine"] > 0
    p = r["permutation"]
    assert p["n_permutations"] == 50 and p["n_voxels"] == reg["brain_voxels"] > 0
    assert math.isfinite(p["speedup_over_reference"]) and p["speedup_over_reference"] > 0
    assert 1 / 51 <= p["min_p"] <= 1
    assert proc.stdout.strip().splitlines()[-1].startswith("permutation test: 50 permutations")
