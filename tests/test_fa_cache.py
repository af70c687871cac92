"""The FA cache of `hcp-cam fa --dataset-dir`: entries validated before reuse, stale temporaries removed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dwi_fixtures import write_dwi

from hcp_cam.cli import main
from hcp_cam.fa_cache import (
    cache_entry_problem,
    fa_cache_path,
    remove_stale_temporaries,
    source_stamp,
    stamp_path,
)
from hcp_cam.fa_maps import compute_dataset_fa


def _dataset(root: Path, subjects=("100206", "100307")) -> dict:
    return {
        s: write_dwi(root / s / "T1w" / "Diffusion", stem=None, n_per_shell=6, seed=30 + k, shape=(8, 9, 7))
        for k, s in enumerate(subjects)
    }


def _run(root: Path, out: Path) -> list[Path]:
    return compute_dataset_fa(root, out, device="cpu", progress=False)


def _mtimes(paths) -> dict:
    return {p: p.stat().st_mtime_ns for p in paths}


def _age(path: Path) -> None:
    """Set an old mtime, so that a rewrite shows even within one clock tick."""
    os.utime(path, ns=(10**9, 10**9))


def test_first_run_writes_each_map_with_a_stamp_of_its_sources(tmp_path):
    root, out = tmp_path / "data", tmp_path / "fa"
    files = _dataset(root)
    paths = _run(root, out)
    for s, f in files.items():
        path = fa_cache_path(out, s, "dwi")
        assert path in paths
        stamp = json.loads(stamp_path(path).read_text())
        assert stamp["sources"] == source_stamp(f.dwi, f.bvals, f.bvecs, f.mask)
        assert stamp["sources"]["dwi"]["size"] == f.dwi.stat().st_size
        assert cache_entry_problem(path, f.dwi, stamp["sources"]) is None
    assert sorted(p.name for p in (out / "100206").iterdir()) == ["dwi_fa.json", "dwi_fa.nii.gz"]


def test_valid_entries_are_reused(tmp_path):
    root, out = tmp_path / "data", tmp_path / "fa"
    _dataset(root)
    paths = _run(root, out)
    for p in paths:
        _age(p)
    before = _mtimes(paths)
    assert _run(root, out) == paths
    assert _mtimes(paths) == before


def test_truncated_cache_file_is_not_cached(tmp_path, caplog):
    root, out = tmp_path / "data", tmp_path / "fa"
    files = _dataset(root)
    paths = _run(root, out)
    bad, good = paths
    _age(good)
    full = bad.read_bytes()
    bad.write_bytes(full[: len(full) // 2])
    _age(bad)
    kept = _mtimes([good])
    with caplog.at_level("WARNING"):
        _run(root, out)
    assert "does not load" in caplog.text and str(bad) in caplog.text
    assert _mtimes([good]) == kept  # the good entry is reused
    fa = nib.load(str(bad)).get_fdata()  # the bad one was computed again, whole
    f = files["100206"]
    assert np.abs(fa[f.mask_array] - f.fa[f.mask_array]).max() < 1e-4


def test_entry_of_a_changed_source_is_recomputed(tmp_path, caplog):
    root, out = tmp_path / "data", tmp_path / "fa"
    files = _dataset(root)
    paths = _run(root, out)
    for p in paths:
        _age(p)
    # the subject's files replaced by another acquisition's
    other = write_dwi(tmp_path / "other", stem=None, n_per_shell=6, seed=99, shape=(8, 9, 7))
    f = files["100307"]
    for src, dst in ((other.dwi, f.dwi), (other.bvals, f.bvals), (other.bvecs, f.bvecs)):
        dst.write_bytes(src.read_bytes())
    before = _mtimes(paths)
    with caplog.at_level("WARNING"):
        _run(root, out)
    assert "source files changed" in caplog.text
    after = _mtimes(paths)
    assert after[paths[0]] == before[paths[0]] and after[paths[1]] != before[paths[1]]
    fa = nib.load(str(paths[1])).get_fdata()
    assert np.abs(fa[other.mask_array] - other.fa[other.mask_array]).max() < 1e-4


def test_entry_on_another_grid_is_recomputed_even_with_a_matching_stamp(tmp_path, caplog):
    root, out = tmp_path / "data", tmp_path / "fa"
    files = _dataset(root, ("100206",))
    (path,) = _run(root, out)
    f = files["100206"]
    shifted = f.affine.copy()
    shifted[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.zeros(f.mask_array.shape, np.float32), shifted), str(path))
    with caplog.at_level("WARNING"):
        _run(root, out)
    assert "affine differs" in caplog.text
    np.testing.assert_array_equal(nib.load(str(path)).affine, nib.load(str(f.dwi)).affine)


@pytest.mark.parametrize("what", ["no stamp", "corrupt stamp"])
def test_entry_without_a_readable_stamp_is_recomputed(what, tmp_path, caplog):
    """A run killed between the FA and its stamp (or a cache of an older version) is not trusted."""
    root, out = tmp_path / "data", tmp_path / "fa"
    _dataset(root, ("100206",))
    (path,) = _run(root, out)
    if what == "no stamp":
        stamp_path(path).unlink()
    else:
        stamp_path(path).write_text("{not json")
    _age(path)
    with caplog.at_level("WARNING"):
        _run(root, out)
    assert "no readable stamp" in caplog.text
    assert path.stat().st_mtime_ns > 10**9 and json.loads(stamp_path(path).read_text())["sources"]


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "fa"
    _dataset(root, ("100206",))
    folder = out / "100206"
    folder.mkdir(parents=True)
    stale = [folder / ".dwi_fa.k1ll3d_x.tmp.nii.gz", folder / ".dwi_fa.abc123.tmp.json"]
    for p in stale:
        p.write_bytes(b"")  # what a kill during nib.save leaves
        _age(p)
    others = [folder / ".other_fa.abc123.tmp.nii.gz", folder / "notes.txt"]  # not this entry's: kept
    for p in others:
        p.write_bytes(b"")
        _age(p)
    rc = main(["fa", "--dataset-dir", str(root), "--out-dir", str(out), "--device", "cpu", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["dwi_fa.nii.gz", "dwi_fa.json", *(p.name for p in others)]
    )


def test_a_temporary_being_written_now_is_kept(tmp_path):
    """Shards run at once: a temporary newer than this process's start may be another job's."""
    path = fa_cache_path(tmp_path, "s1", "dwi")
    path.parent.mkdir(parents=True)
    live = path.parent / ".dwi_fa.l1v3xx.tmp.nii.gz"
    live.write_bytes(b"partial")
    old = path.parent / ".dwi_fa.0ld0ld.tmp.nii.gz"
    old.write_bytes(b"")
    _age(old)
    assert remove_stale_temporaries(path, older_than=time.time() - 60) == [old]
    assert live.exists() and not old.exists()
