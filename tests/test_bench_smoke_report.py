"""The report benchmark at the demo size: 10 test subjects make a page well under 15 MB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_report_of_ten_demo_subjects_is_under_15_mb(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_report.py"), "--size", "demo", "--subjects", "10",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["config"]["shape"] == [40, 48, 40] and result["scenes"] == 10
    assert result["page_bytes"] < 15e6
    # the page is NiiVue, the volumes, and little else (no figures in this synthetic run)
    assert (
        result["niivue_bytes"] + result["volume_bytes"]
        < result["page_bytes"]
        < result["niivue_bytes"] + result["volume_bytes"] + 300_000
    )
    assert set(result["volume_bytes_by_layer"]) == {"FA", "CAM", "CAM box", "true region"}
    assert proc.stdout.strip().splitlines()[-1].split()[0] == "40x48x40"
