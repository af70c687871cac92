"""benchmarks/bench_bids_index.py --smoke runs in a subprocess and writes the JSON keys it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_bids_index.py"
STEPS = ("os_walk", "fingerprint", "index_memory", "index_build", "index_load", "discover")


def test_bench_bids_index_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert set(r) >= {"machine", "versions", "tree", "times_s", "median_s", "ratio_to_os_walk"}
    assert r["tree"] == {"subjects": 10, "sessions": 2, "dwi": 20, "files": 164}
    assert r["discovered_acquisitions"] == 20
    assert set(r["median_s"]) == set(STEPS) and all(r["median_s"][k] > 0 for k in STEPS)
    assert r["ratio_to_os_walk"]["os_walk"] == 1.0
    assert r["speedup_cached_over_memory"] == r["median_s"]["index_memory"] / r["median_s"]["index_load"]
    assert proc.stdout.strip().splitlines()[-1].startswith("cached index:")
