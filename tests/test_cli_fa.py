"""`hcp-cam fa` and hcp_cam.fa_maps: geometry kept (nibabel and SimpleITK), errors, dataset cache, shards."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from dwi_fixtures import write_dwi

from hcp_cam.cli import main
from hcp_cam.errors import ConfigError
from hcp_cam.fa_maps import compute_dataset_fa, compute_fa_file, fa_cache_path, metric_paths, parse_shard

LPS = np.diag([-1.0, -1.0, 1.0])


def _sitk_affine(path: Path) -> np.ndarray:
    """Voxel -> RAS affine as SimpleITK reads it (LPS, converted)."""
    img = sitk.ReadImage(str(path))
    d = img.GetDimension()  # a DWI reads as 4D: keep its spatial 3x3 block
    rot = np.asarray(img.GetDirection()).reshape(d, d)[:3, :3] * np.asarray(img.GetSpacing())[None, :3]
    aff = np.eye(4)
    aff[:3, :3] = LPS @ rot
    aff[:3, 3] = LPS @ np.asarray(img.GetOrigin())[:3]
    return aff


@pytest.mark.parametrize("kind", ["ras", "las", "oblique", "anisotropic"])
def test_single_file_keeps_geometry(kind, tmp_path, capsys):
    f = write_dwi(tmp_path, affine=kind, n_per_shell=6, seed=2)
    out = tmp_path / "out" / "sub_fa.nii.gz"
    rc = main(["fa", str(f.dwi), "--bvals", str(f.bvals), "--bvecs", str(f.bvecs), "--mask", str(f.mask)]
              + ["--out", str(out), "--metrics", "fa,md,v1", "--device", "cpu"])  # fmt: skip
    assert rc == 0
    dwi_img, fa_img = nib.load(str(f.dwi)), nib.load(str(out))
    assert fa_img.shape == dwi_img.shape[:3] and fa_img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(fa_img.affine, dwi_img.affine)
    for getter in ("get_sform", "get_qform"):
        a, code_a = getattr(dwi_img.header, getter)(coded=True)
        b, code_b = getattr(fa_img.header, getter)(coded=True)
        assert int(code_a) == int(code_b) and code_b > 0
        np.testing.assert_array_equal(a, b)
    assert fa_img.header.get_zooms() == dwi_img.header.get_zooms()[:3]
    np.testing.assert_allclose(_sitk_affine(out), _sitk_affine(f.dwi), atol=1e-6)
    np.testing.assert_allclose(_sitk_affine(out), dwi_img.affine, atol=1e-4)
    # SimpleITK's (z, y, x) array is nibabel's transposed
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(out))).T, fa_img.get_fdata(dtype=np.float32)
    )
    fa = fa_img.get_fdata()
    assert np.abs(fa[f.mask_array] - f.fa[f.mask_array]).max() < 1e-4
    md, v1 = tmp_path / "out" / "sub_md.nii.gz", tmp_path / "out" / "sub_v1.nii.gz"
    assert nib.load(str(md)).shape == fa.shape and nib.load(str(v1)).shape == (*fa.shape, 3)
    np.testing.assert_array_equal(nib.load(str(v1)).affine, dwi_img.affine)
    assert "fa:" in capsys.readouterr().out


def test_defaults_find_gradients_beside_and_dipy_backend(tmp_path):
    f = write_dwi(tmp_path, n_per_shell=6, write_mask=False)
    out_t, out_d = tmp_path / "t.nii.gz", tmp_path / "d.nii.gz"
    assert main(["fa", str(f.dwi), "--out", str(out_t), "--device", "cpu"]) == 0
    assert main(["fa", str(f.dwi), "--out", str(out_d), "--backend", "dipy"]) == 0
    a, b = nib.load(str(out_t)).get_fdata(), nib.load(str(out_d)).get_fdata()
    assert np.abs(a - b).max() < 1e-4 and a.max() > 0.3


def _bad(kind: str, tmp: Path) -> tuple[list[str], Path, str]:
    f = write_dwi(tmp / "in", n_per_shell=6)
    args = ["--bvals", str(f.bvals), "--bvecs", str(f.bvecs), "--mask", str(f.mask)]
    if kind == "3d":
        nib.save(nib.Nifti1Image(f.data[..., 0], f.affine), str(f.dwi))
        return [str(f.dwi), *args], f.dwi, "expected a 4D image"
    if kind == "nan":
        d = f.data.copy()
        d[1, 2, 3, 4] = np.inf
        nib.save(nib.Nifti1Image(d, f.affine), str(f.dwi))
        return [str(f.dwi), *args], f.dwi, "NaN or Inf"
    if kind == "mask_shape":
        nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), f.affine), str(f.mask))
        return [str(f.dwi), *args], f.mask, "does not match"
    if kind == "missing":
        return [str(tmp / "nope.nii.gz"), *args], tmp / "nope.nii.gz", "file not found"
    if kind == "truncated":
        raw = f.dwi.read_bytes()
        f.dwi.write_bytes(raw[: len(raw) // 3])
        return [str(f.dwi), *args], f.dwi, "corrupt or truncated"
    if kind == "bvals_count":
        f.bvals.write_text(" ".join(f"{b:g}" for b in f.bvals_array[:-1]))
        return [str(f.dwi), *args], f.bvals, "b-values for an image of"
    if kind == "no_b0":
        f.bvals.write_text(" ".join(f"{b + 200:g}" for b in f.bvals_array))
        return [str(f.dwi), *args], f.bvals, "no b0 volume"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["3d", "nan", "mask_shape", "missing", "truncated", "bvals_count", "no_b0"])
def test_bad_input_exits_2_and_writes_nothing(kind, tmp_path, capsys):
    argv, culprit, words = _bad(kind, tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc = main(["fa", *argv, "--out", str(out_dir / "fa.nii.gz"), "--metrics", "fa,md", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("hcp-cam fa: error: ") and str(culprit) in err and words in err
    assert list(out_dir.iterdir()) == []  # no output, no temporary file


@pytest.mark.parametrize(
    "argv",
    [
        ["fa", "--out", "x.nii.gz"],
        ["fa", "--dataset-dir", "d"],
        ["fa", "a.nii.gz", "--out", "x.nii.gz", "--metrics", "fa,mode"],
        ["fa", "--dataset-dir", "d", "--out-dir", "o", "--shard", "2/2"],
        ["fa", "--dataset-dir", "d", "--out-dir", "o", "--shard", "x"],
    ],
)
def test_bad_options_exit_2(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "hcp-cam fa: error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _dataset(root: Path, subjects: list[str]) -> dict[str, object]:
    files = {}
    for k, s in enumerate(subjects):
        files[s] = write_dwi(
            root / s / "T1w" / "Diffusion", stem=None, n_per_shell=6, seed=20 + k, shape=(8, 9, 7)
        )
    return files


def test_dataset_cache_recomputes_nothing_and_shards_partition(tmp_path):
    root, out = tmp_path / "data", tmp_path / "fa"
    files = _dataset(root, ["100206", "100307", "100408", "100610", "101006"])
    # shards split the sorted acquisitions without overlap
    parts = [compute_dataset_fa(root, out, device="cpu", shard=(i, 3), progress=False) for i in range(3)]
    flat = [p for part in parts for p in part]
    assert len(flat) == len(set(flat)) == 5
    assert sorted(flat) == sorted(fa_cache_path(out, s, "dwi") for s in files)
    assert parts[0] == [fa_cache_path(out, "100206", "dwi"), fa_cache_path(out, "100610", "dwi")]
    for s, f in files.items():
        fa = nib.load(str(fa_cache_path(out, s, "dwi")))
        np.testing.assert_array_equal(fa.affine, nib.load(str(f.dwi)).affine)
        assert np.abs(fa.get_fdata()[f.mask_array] - f.fa[f.mask_array]).max() < 1e-4
    # second run: every file is kept as it is
    before = {p: p.stat().st_mtime_ns for p in flat}
    os.utime(flat[0], ns=(1, 1))  # an old mtime shows a rewrite even within one clock tick
    before[flat[0]] = 1
    again = compute_dataset_fa(root, out, device="cpu", progress=False)
    assert sorted(again) == sorted(flat)
    assert {p: p.stat().st_mtime_ns for p in flat} == before


def test_dataset_bad_acquisition_stops_without_half_file_and_resumes(tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "fa"
    files = _dataset(root, ["100206", "100307", "100408"])
    good = files["100307"].dwi.read_bytes()
    files["100307"].dwi.write_bytes(good[: len(good) // 2])
    rc = main(["fa", "--dataset-dir", str(root), "--out-dir", str(out), "--device", "cpu", "--no-progress"])
    assert rc == 2 and str(files["100307"].dwi) in capsys.readouterr().err
    assert fa_cache_path(out, "100206", "dwi").exists()
    assert not (out / "100307").exists() or list((out / "100307").iterdir()) == []
    first = fa_cache_path(out, "100206", "dwi").stat().st_mtime_ns
    files["100307"].dwi.write_bytes(good)
    assert (
        main(["fa", "--dataset-dir", str(root), "--out-dir", str(out), "--device", "cpu", "--no-progress"])
        == 0
    )
    assert all(fa_cache_path(out, s, "dwi").exists() for s in files)
    assert fa_cache_path(out, "100206", "dwi").stat().st_mtime_ns == first


def test_helpers(tmp_path):
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    paths = metric_paths(tmp_path / "s_fa.nii.gz", ("fa", "md", "color_fa"))
    assert paths == {
        "fa": tmp_path / "s_fa.nii.gz",
        "md": tmp_path / "s_md.nii.gz",
        "color_fa": tmp_path / "s_color_fa.nii.gz",
    }
    with pytest.raises(ValueError, match="subject"):
        fa_cache_path(tmp_path, "../x", "dwi")


def test_refuses_to_overwrite_the_input(tmp_path):
    f = write_dwi(tmp_path, n_per_shell=6)
    before = f.dwi.read_bytes()
    with pytest.raises(ValueError, match="overwrite the input"):
        compute_fa_file(f.dwi, f.bvals, f.bvecs, None, f.dwi, device="cpu")
    assert f.dwi.read_bytes() == before
