"""LoadDWI / LoadDWId on real NIfTI files: shapes, exact affine, gradient meta, and bad inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from dwi_fixtures import make_affine, write_dwi, write_gradients
from monai.data import MetaTensor

from hcp_cam.errors import InputError
from hcp_cam.transforms import LoadDWI, LoadDWId


@pytest.mark.parametrize("kind", ["ras", "las", "oblique", "anisotropic"])
def test_shapes_affine_and_meta(kind, tmp_path):
    f = write_dwi(tmp_path, affine=kind, n_per_shell=6)
    dwi, mask = LoadDWI()(f.dwi, f.bvals, f.bvecs, f.mask)
    n = len(f.bvals_array)
    assert isinstance(dwi, MetaTensor) and dwi.shape == (n, 12, 14, 10) and dwi.dtype == torch.float32
    np.testing.assert_array_equal(dwi.affine.numpy(), nib.load(str(f.dwi)).affine)  # exactly the file's
    np.testing.assert_array_equal(dwi.numpy(), np.moveaxis(f.data, -1, 0))
    np.testing.assert_array_equal(dwi.meta["bvals"], f.bvals_array)
    np.testing.assert_allclose(dwi.meta["bvecs"], f.bvecs_array, atol=1e-7)
    assert dwi.meta["shells"].shape == (n,) and dwi.meta["b0_mask"].sum() == 2
    assert dwi.meta["filename_or_obj"] == str(f.dwi)
    assert isinstance(mask, MetaTensor) and mask.shape == (1, 12, 14, 10) and mask.dtype == torch.uint8
    np.testing.assert_array_equal(mask.numpy()[0], f.mask_array.astype(np.uint8))
    np.testing.assert_array_equal(mask.affine.numpy(), dwi.affine.numpy())


def test_no_mask_gives_all_ones_and_gradients_found_beside(tmp_path):
    f = write_dwi(tmp_path / "fsl", n_per_shell=6)  # dwi.nii.gz + dwi.bval/.bvec
    dwi, mask = LoadDWI()(f.dwi)
    assert mask.dtype == torch.uint8 and bool((mask == 1).all())
    np.testing.assert_array_equal(dwi.meta["bvals"], f.bvals_array)
    hcp = write_dwi(tmp_path / "hcp", stem=None, n_per_shell=6, seed=4)  # data.nii.gz + bvals/bvecs
    dwi2, _ = LoadDWI()(hcp.dwi)
    np.testing.assert_array_equal(dwi2.meta["bvals"], hcp.bvals_array)


def test_dictionary_version(tmp_path):
    f = write_dwi(tmp_path, n_per_shell=6)
    d = LoadDWId()(
        {"dwi": str(f.dwi), "bvals": str(f.bvals), "bvecs": str(f.bvecs), "mask": str(f.mask), "age": 30}
    )
    assert d["dwi"].shape[0] == len(f.bvals_array) and d["mask"].shape == (1, 12, 14, 10) and d["age"] == 30
    assert LoadDWId(keys="other", allow_missing_keys=True)({"dwi": "x"}) == {"dwi": "x"}
    with pytest.raises(KeyError):
        LoadDWId(keys="other")({"dwi": "x"})


def test_dipy_small_64d_int16_nx3():
    import dipy

    folder = Path(dipy.__file__).parent / "data" / "files"
    nii, bval, bvec = folder / "small_64D.nii", folder / "small_64D.bval", folder / "small_64D.bvec"
    if not (nii.exists() and bval.exists() and bvec.exists()):
        pytest.skip("DIPY's small_64D is not shipped with this installation")
    dwi, mask = LoadDWI()(nii, bval, bvec)
    raw = nib.load(str(nii))
    assert dwi.shape == (65, 10, 10, 10) and dwi.dtype == torch.float32
    np.testing.assert_array_equal(dwi.affine.numpy(), raw.affine)
    np.testing.assert_array_equal(dwi.numpy()[3], np.asarray(raw.dataobj)[..., 3].astype(np.float32))
    assert np.isfinite(dwi.meta["bvecs"]).all()


def _corrupt(kind: str, tmp: Path):
    """Write one bad acquisition; return (call kwargs, offending file, expected words)."""
    f = write_dwi(tmp, n_per_shell=6)
    kw = {"filename": f.dwi, "bvals": f.bvals, "bvecs": f.bvecs, "mask": f.mask}
    if kind == "3d":
        nib.save(nib.Nifti1Image(f.data[..., 0], f.affine), str(f.dwi))
        return kw, f.dwi, "expected a 4D image"
    if kind == "nan":
        data = f.data.copy()
        data[3, 4, 5, 2] = np.nan
        nib.save(nib.Nifti1Image(data, f.affine), str(f.dwi))
        return kw, f.dwi, "NaN or Inf"
    if kind == "mask_shape":
        nib.save(nib.Nifti1Image(np.ones((12, 14, 9), np.uint8), f.affine), str(f.mask))
        return kw, f.mask, "does not match the DWI's spatial shape"
    if kind == "mask_affine":
        nib.save(nib.Nifti1Image(f.mask_array.astype(np.uint8), make_affine("las")), str(f.mask))
        return kw, f.mask, "affine differs"
    if kind == "missing":
        f.dwi.unlink()
        return kw, f.dwi, "file not found"
    if kind == "truncated":
        raw = f.dwi.read_bytes()
        f.dwi.write_bytes(raw[: len(raw) // 2])
        return kw, f.dwi, "corrupt or truncated"
    if kind == "not_gzip":
        f.dwi.write_bytes(b"this is not a NIfTI file at all" * 20)
        return kw, f.dwi, "cannot read as NIfTI"
    if kind == "volumes_vs_bvals":
        write_gradients(tmp, f.bvals_array[:-1], f.bvecs_array[:-1])
        return kw, f.bvals, "b-values for an image of"
    if kind == "no_gradients_beside":
        f.bvals.unlink()
        return {"filename": f.dwi}, f.dwi, "no gradient files given and none found"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "3d",
        "nan",
        "mask_shape",
        "mask_affine",
        "missing",
        "truncated",
        "not_gzip",
        "volumes_vs_bvals",
        "no_gradients_beside",
    ],
)
def test_bad_inputs_name_the_file(kind, tmp_path):
    kw, culprit, words = _corrupt(kind, tmp_path)
    with pytest.raises(InputError) as err:
        LoadDWI()(**kw)
    assert str(culprit) in str(err.value) and words in str(err.value)


def test_gzip_of_garbage_is_reported(tmp_path):
    bad = tmp_path / "dwi.nii.gz"
    bad.write_bytes(gzip.compress(b"\x00" * 400))
    f = write_dwi(tmp_path / "ok", n_per_shell=6)
    with pytest.raises(InputError, match="dwi.nii.gz"):
        LoadDWI()(bad, f.bvals, f.bvecs)
