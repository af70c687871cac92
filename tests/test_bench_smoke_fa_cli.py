"""benchmarks/bench_fa_cli.py --smoke runs in a subprocess and writes the JSON keys it promises."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fa_cli.py"


def test_bench_fa_cli_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    variants = {"torch", "dipy", "torch+monai"}
    for key in ("startup_wall_s", "startup_cpu_s", "end_to_end_wall_s", "end_to_end_cpu_s"):
        assert set(r["median"][key]) == variants and all(v > 0 for v in r["median"][key].values())
    assert r["sizes"]["n_volumes"] == 51 and r["sizes"]["n_mask_voxels"] > 0
    assert all(math.isfinite(v) and v > 0 for v in r["ratio_dipy_over_torch"].values())
    assert r["modules"]["monai"] == 0 and r["modules"]["torch"] > 0  # the torch run loads no MONAI
    assert 0 <= r["max_abs_dfa_in_mask"] < 1e-3
    assert len(r["machine"]["load_average_1min"]) == 4  # before, and after each variant
    assert proc.stdout.strip().splitlines()[-1].startswith("end to end dipy/torch")
