"""`hcp-cam fa` on the bad inputs of issue 17: one line naming the file, expected vs found, exit 2,
inputs untouched, nothing written, and output problems found before the DWI is read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dwi_fixtures import write_dwi

from hcp_cam.cli import main


def _files(tmp: Path):
    f = write_dwi(tmp / "in", n_per_shell=6, shape=(8, 9, 7))
    snapshot = {p: p.read_bytes() for p in (f.dwi, f.bvals, f.bvecs, f.mask)}
    return f, snapshot


def _run(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(["fa", *argv, "--device", "cpu"])
    err = capsys.readouterr().err
    return rc, err


def _one_line_error(err: str, *words: str) -> None:
    assert err.startswith("hcp-cam fa: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def _argv(f, out, **over) -> list[str]:
    opts = {"--bvals": f.bvals, "--bvecs": f.bvecs, "--mask": f.mask, "--out": out, **over}
    return [str(f.dwi), *[str(x) for kv in opts.items() for x in kv]]


def _unchanged(snapshot) -> None:
    for p, data in snapshot.items():
        assert p.read_bytes() == data, f"{p} was modified"


@pytest.mark.parametrize("which", ["mask", "dwi"])
def test_output_equal_to_an_input_is_refused(which, tmp_path, capsys):
    f, snap = _files(tmp_path)
    target, kind = (f.mask, "mask") if which == "mask" else (f.dwi, "DWI")
    alias = target.parent / ".." / target.parent.name / target.name  # another spelling: compared resolved
    rc, err = _run(_argv(f, alias, **{"--metrics": "fa,md"}), capsys)
    assert rc == 2
    _one_line_error(err, str(alias), f"overwrite the input {kind}")
    _unchanged(snap)
    assert not target.with_name(target.name.replace(".nii.gz", "_md.nii.gz")).exists()


@pytest.mark.parametrize(("which", "kind"), [("bvals", "b-values file"), ("bvecs", "b-vectors file")])
def test_metric_output_equal_to_a_gradient_file_is_refused(which, kind, tmp_path, capsys):
    """An MD output with the name of a gradient file (``dwi_md.nii.gz`` given as --bvals or --bvecs)."""
    f, _ = _files(tmp_path)
    src = f.bvals if which == "bvals" else f.bvecs
    renamed = src.with_name("dwi_md.nii.gz")
    src.rename(renamed)
    snap = {renamed: renamed.read_bytes()}
    out = f.dwi.with_name("dwi_fa.nii.gz")
    rc, err = _run(_argv(f, out, **{f"--{which}": renamed, "--metrics": "fa,md"}), capsys)
    assert rc == 2
    _one_line_error(err, str(renamed), f"overwrite the input {kind}")
    _unchanged(snap)
    assert not out.exists()


def test_all_zero_mask_is_refused(tmp_path, capsys):
    f, _ = _files(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros(f.mask_array.shape, np.uint8), f.affine), str(f.mask))
    out = tmp_path / "out" / "fa.nii.gz"
    rc, err = _run(_argv(f, out), capsys)
    assert rc == 2
    _one_line_error(err, str(f.mask), "mask is empty", "found none")
    assert not out.parent.exists()


@pytest.mark.parametrize("value", [0.0, -7.0])
def test_all_zero_or_all_negative_dwi_is_refused(value, tmp_path, capsys):
    f, _ = _files(tmp_path)
    nib.save(nib.Nifti1Image(np.full(f.data.shape, value, np.float32), f.affine), str(f.dwi))
    out = tmp_path / "out" / "fa.nii.gz"
    rc, err = _run(_argv(f, out), capsys)
    assert rc == 2
    _one_line_error(err, str(f.dwi), "positive b0 signal", f"largest mean b0 {value:g}")
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("scale", "unit", "fix"),
    [(1e6, "s/m^2", "divide them by 1e6"), (1e-3, "ms/um^2", "multiply them by 1000")],
)
def test_bvals_in_another_unit_are_refused_naming_the_bvals_file(scale, unit, fix, tmp_path, capsys):
    f, _ = _files(tmp_path)
    b = f.bvals_array.copy()
    b[b <= 50] = 0  # b0 = 0, as such files have
    f.bvals.write_text(" ".join(f"{v * scale:.6g}" for v in b))
    rc, err = _run(_argv(f, tmp_path / "fa.nii.gz"), capsys)
    assert rc == 2
    _one_line_error(err, str(f.bvals), f"b-values look like {unit}", "expected s/mm^2", fix)
    assert str(f.bvecs) not in err
    assert not (tmp_path / "fa.nii.gz").exists()


def _corrupt_dwi(f) -> None:
    """A DWI that fails when read: an error about an output proves the output was checked first."""
    raw = f.dwi.read_bytes()
    f.dwi.write_bytes(raw[: len(raw) // 3])


def test_output_path_that_is_a_folder(tmp_path, capsys):
    f, _ = _files(tmp_path)
    _corrupt_dwi(f)
    out = tmp_path / "fa.nii.gz"
    out.mkdir()
    rc, err = _run(_argv(f, out), capsys)
    assert rc == 2
    _one_line_error(err, str(out), "is a folder", "expected a file name ending in .nii.gz or .nii")
    assert list(out.iterdir()) == []


def test_output_without_nifti_extension(tmp_path, capsys):
    f, _ = _files(tmp_path)
    _corrupt_dwi(f)
    out = tmp_path / "fa.img"
    rc, err = _run(_argv(f, out), capsys)
    assert rc == 2
    _one_line_error(err, str(out), "must end in .nii.gz or .nii", "'fa.img'")
    assert not out.exists()


def test_second_metric_output_that_is_a_folder_is_found_before_the_fit(tmp_path, capsys):
    f, _ = _files(tmp_path)
    _corrupt_dwi(f)
    (tmp_path / "sub_md.nii.gz").mkdir()
    rc, err = _run(_argv(f, tmp_path / "sub_fa.nii.gz", **{"--metrics": "fa,md"}), capsys)
    assert rc == 2
    _one_line_error(err, str(tmp_path / "sub_md.nii.gz"), "MD output is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "sub_md.nii.gz"]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can create files in: mode 0o555, and immutable (chattr +i) for root."""
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    immutable = False
    try:
        probe = folder / "probe"
        try:
            probe.touch()
            probe.unlink()
            writable = True
        except OSError:
            writable = False
        if writable:  # root ignores the mode bits
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
            try:
                probe.touch()
                probe.unlink()
                pytest.skip("cannot make a read-only folder on this machine (root without chattr)")
            except OSError:
                pass
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        os.chmod(folder, 0o755)


def test_output_in_a_read_only_folder(read_only_folder, tmp_path, capsys):
    f, _ = _files(tmp_path)
    _corrupt_dwi(f)
    for out in (read_only_folder / "fa.nii.gz", read_only_folder / "new" / "fa.nii.gz"):
        rc, err = _run(_argv(f, out), capsys)
        assert rc == 2
        _one_line_error(err, str(out), f"folder {read_only_folder} is not writable")
    assert list(read_only_folder.iterdir()) == []


def test_bvals_pointing_at_a_folder(tmp_path, capsys):
    f, _ = _files(tmp_path)
    folder = tmp_path / "bvals_dir"
    folder.mkdir()
    rc, err = _run(_argv(f, tmp_path / "fa.nii.gz", **{"--bvals": folder}), capsys)
    assert rc == 2
    _one_line_error(err, str(folder), "expected a b-values text file, found a folder")
    assert not (tmp_path / "fa.nii.gz").exists()


def test_dwi_pointing_at_a_folder(tmp_path, capsys):
    f, _ = _files(tmp_path)
    folder = tmp_path / "dwi.nii.gz"
    folder.mkdir()
    rc, err = _run(
        [str(folder), "--bvals", str(f.bvals), "--bvecs", str(f.bvecs), "--out", str(tmp_path / "fa.nii.gz")],
        capsys,
    )
    assert rc == 2
    _one_line_error(err, str(folder), "expected a NIfTI file, found a folder")


def test_failed_second_write_leaves_no_first_output(tmp_path, capsys, monkeypatch):
    """--metrics fa,md where writing MD fails (a full disk): neither map is left, nor a temporary."""
    import errno

    import hcp_cam.fa_maps as fa_maps

    f, snap = _files(tmp_path)
    real_save, calls = nib.save, []

    def save_then_fail(img, filename):
        calls.append(filename)
        if len(calls) == 2:  # the MD map: half of it written, then the disk is full
            Path(filename).write_bytes(b"\x00" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        real_save(img, filename)

    monkeypatch.setattr(fa_maps.nib, "save", save_then_fail)
    out_dir = tmp_path / "out"
    rc, err = _run(_argv(f, out_dir / "sub_fa.nii.gz", **{"--metrics": "fa,md"}), capsys)
    assert rc == 2 and len(calls) == 2
    _one_line_error(err, str(out_dir / "sub_fa.nii.gz"), "cannot write the maps", "none was written")
    assert not out_dir.exists()  # the maps, their temporaries and the folder made for them: gone
    _unchanged(snap)
