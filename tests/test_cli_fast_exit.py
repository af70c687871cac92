"""`hcp-cam fa` on one DWI ends without the interpreter's teardown (hcp_cam.cli.console_main), and
loses nothing by it: its printed lines reach a pipe, its FA is the in-process run's, no temporary
file is left. Dataset mode and errors exit the ordinary way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from dwi_fixtures import write_dwi

from hcp_cam.cli import main

# the program as the console script runs it, with an exit handler that reports the ordinary teardown
_PROGRAM = """
import atexit, sys
atexit.register(lambda: print("TEARDOWN", flush=True))
from hcp_cam.cli import console_main
sys.argv = ["hcp-cam", *sys.argv[1:]]
console_main()
"""


def _program(*argv: str) -> subprocess.CompletedProcess:
    # block-buffered stdout, as in a batch job (PYTHONUNBUFFERED would hide a missing flush)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM, *argv], capture_output=True, text=True, timeout=300, env=env
    )


def test_fa_on_one_dwi_skips_the_teardown_and_keeps_its_outputs(tmp_path):
    f = write_dwi(tmp_path / "in", n_per_shell=6, shape=(8, 9, 7))
    out = tmp_path / "out" / "fa.nii.gz"
    proc = _program("fa", str(f.dwi), "--mask", str(f.mask), "--out", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"fa: {out}"]  # flushed into the pipe before os._exit
    assert sorted(p.name for p in out.parent.iterdir()) == ["fa.nii.gz"]  # no temporary name left
    reference = tmp_path / "ref" / "fa.nii.gz"
    assert main(["fa", str(f.dwi), "--mask", str(f.mask), "--out", str(reference), "--device", "cpu"]) == 0
    a, b = nib.load(out), nib.load(reference)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_array_equal(a.affine, b.affine)
    assert np.asarray(a.dataobj).max() > 0.3  # a real fit, not an empty file


def test_errors_and_dataset_mode_exit_the_ordinary_way(tmp_path):
    missing = tmp_path / "nope.nii.gz"
    proc = _program("fa", str(missing), "--out", str(tmp_path / "fa.nii.gz"), "--device", "cpu")
    assert proc.returncode == 2 and "nope.nii.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.strip() == "TEARDOWN"
    data = tmp_path / "data" / "100206" / "T1w" / "Diffusion"
    d = write_dwi(data, stem=None, n_per_shell=6, shape=(6, 7, 5))
    cache = tmp_path / "cache"
    argv = [
        "fa",
        "--dataset-dir",
        str(tmp_path / "data"),
        "--out-dir",
        str(cache),
        "--device",
        "cpu",
        "--no-progress",
    ]
    proc = _program(*argv, "--cache-dir", str(tmp_path / "user-cache"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"1 FA maps in {cache}", "TEARDOWN"]
    assert (cache / "100206" / "dwi_fa.nii.gz").is_file()
    assert Path(d.dwi).is_file()  # the dataset's input is left where it was
