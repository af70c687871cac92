"""`hcp-cam --help` and every sub-command's parser load without torch or MONAI (~1 s instead of ~5 s);
the choices the CLI writes out for that reason are the library's own."""

from __future__ import annotations

import subprocess
import sys

from hcp_cam.cam.inferer import METHODS
from hcp_cam.cam.volume import COVERAGE_MODES
from hcp_cam.cli import build_parser
from hcp_cam.transforms.tensor_fit import BACKENDS, TENSOR_METRICS


def test_building_the_parser_imports_no_torch_or_monai():
    code = (
        "import sys\n"
        "from hcp_cam.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = sorted(m for m in ('torch', 'monai', 'dipy', 'SimpleITK') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"imported at parser build: {out.stdout.strip()}"


def _sub_actions(command: str) -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {a.dest: a for a in sub.choices[command]._actions}


def test_written_out_choices_match_the_library():
    fa = _sub_actions("fa")
    assert tuple(fa["backend"].choices) == BACKENDS
    assert all(m in fa["metrics"].help for m in TENSOR_METRICS)
    from hcp_cam.cli.fa import TENSOR_METRICS as CLI_METRICS

    assert CLI_METRICS == tuple(TENSOR_METRICS)
    cam = _sub_actions("cam")
    assert tuple(cam["method"].choices) == METHODS
    assert tuple(cam["coverage"].choices) == COVERAGE_MODES
