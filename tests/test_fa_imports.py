"""`hcp-cam fa` imports no MONAI module (single file and --dataset-dir), and hcp_cam.transforms loads
its MONAI transforms only when one is asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dwi_fixtures import write_dwi

# runs the real command line, then lists every module the process imported
_WRAPPER = """
import json, sys
from hcp_cam.cli import main
rc = main(sys.argv[2:])
with open(sys.argv[1], "w") as fh:
    json.dump(sorted(sys.modules), fh)
sys.exit(rc)
"""


def _modules(tmp_path: Path, argv: list[str]) -> set[str]:
    listing = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(listing), *argv], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(listing.read_text()))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_fa_single_file_imports_no_monai(tmp_path):
    f = write_dwi(tmp_path / "in", n_per_shell=6, shape=(6, 7, 5))
    out = tmp_path / "fa.nii.gz"
    mods = _modules(tmp_path, ["fa", str(f.dwi), "--mask", str(f.mask), "--out", str(out), "--device", "cpu"])
    assert out.exists() and "torch" in mods and "hcp_cam.transforms.tensor_maps" in mods  # it did fit
    # (nibabel itself imports the top of scipy: not listed)
    heavy = _top(mods) & {"monai", "ignite", "dipy", "SimpleITK", "matplotlib", "pandas", "sympy"}
    assert heavy == set(), f"hcp-cam fa imported {sorted(heavy)}"


def test_fa_dataset_dir_imports_no_monai(tmp_path):
    write_dwi(tmp_path / "data" / "100206" / "T1w" / "Diffusion", stem=None, n_per_shell=6, shape=(6, 7, 5))
    out = tmp_path / "cache"
    argv = [
        "fa",
        "--dataset-dir",
        str(tmp_path / "data"),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
    ]
    mods = _modules(tmp_path, argv)
    assert (out / "100206" / "dwi_fa.nii.gz").exists()
    heavy = _top(mods) & {"monai", "ignite", "dipy", "SimpleITK", "matplotlib", "sympy"}
    assert heavy == set(), f"hcp-cam fa --dataset-dir imported {sorted(heavy)}"


def test_dipy_backend_imports_dipy_but_no_monai(tmp_path):
    f = write_dwi(tmp_path / "in", n_per_shell=6, shape=(6, 7, 5))
    argv = ["fa", str(f.dwi), "--out", str(tmp_path / "fa.nii.gz"), "--backend", "dipy", "--device", "cpu"]
    mods = _top(_modules(tmp_path, argv))
    assert "dipy" in mods and "monai" not in mods


def test_transforms_package_is_lazy():
    code = (
        "import sys\n"
        "import hcp_cam.transforms as T\n"
        "from hcp_cam.transforms import read_dwi, fit_dti_maps, GradientTable, fractional_anisotropy\n"
        "print('monai' in sys.modules)\n"
        "T.LoadDWI\n"
        "print('monai' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "True"]


def test_every_public_name_resolves():
    import hcp_cam.transforms as T

    assert set(T.__all__) == set(T._LAZY)
    for name in T.__all__:
        value = getattr(T, name)
        module = getattr(value, "__module__", None)
        if module is not None:  # classes and functions come from the submodule the table names
            assert module == f"hcp_cam.transforms.{T._LAZY[name]}", name
    assert set(T.__all__) <= set(dir(T))
    with pytest.raises(AttributeError, match="no attribute 'LoadDWl'"):
        T.LoadDWl  # noqa: B018
