"""load_fa_with_mask: the one loader of an FA map with its brain mask (training, CAM, sanity checks)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from hcp_cam.errors import InputError
from hcp_cam.fa_volume import load_fa_with_mask

AFFINE = np.diag([-1.25, 1.25, 1.25, 1.0])


def _save(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _fa(tmp_path):
    fa = np.zeros((6, 7, 5), np.float32)
    fa[1:5, 2:6, 1:4] = np.linspace(0.1, 0.9, 48, dtype=np.float32).reshape(4, 4, 3)
    return _save(tmp_path / "fa.nii.gz", fa), fa


def test_mask_from_file_and_from_fa(tmp_path):
    fa_path, fa = _fa(tmp_path)
    mask = np.zeros(fa.shape, np.int16)
    mask[0:3, 0:3, 0:2] = 7  # any nonzero is brain, background included where FA is 0
    vol = load_fa_with_mask(fa_path, _save(tmp_path / "m.nii.gz", mask))
    assert vol.fa.dtype == np.float32 and vol.mask.dtype == bool
    np.testing.assert_array_equal(vol.fa, fa)
    np.testing.assert_array_equal(vol.mask, mask != 0)
    np.testing.assert_array_equal(vol.affine, AFFINE)
    assert vol.fa_path == fa_path and vol.mask_path == tmp_path / "m.nii.gz"
    no_mask = load_fa_with_mask(fa_path)
    np.testing.assert_array_equal(no_mask.mask, fa > 0)
    assert no_mask.mask_path is None and no_mask.mask.sum() == 48


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("shape", "mask grid (6, 7, 4) differs from the FA grid (6, 7, 5)"),
        ("affine", "mask affine differs from the affine of"),
        ("empty", "the brain mask is empty"),
        ("4d", "expected a 3D image"),
    ],
)
def test_bad_masks_name_the_mask(case, words, tmp_path):
    fa_path, fa = _fa(tmp_path)
    m = tmp_path / "m.nii.gz"
    if case == "shape":
        _save(m, np.ones((6, 7, 4), np.uint8))
    elif case == "affine":
        shifted = AFFINE.copy()
        shifted[2, 3] = 2.5
        _save(m, np.ones(fa.shape, np.uint8), shifted)
    elif case == "empty":
        _save(m, np.zeros(fa.shape, np.uint8))
    else:
        _save(m, np.ones((*fa.shape, 2), np.uint8))
    with pytest.raises(InputError) as err:
        load_fa_with_mask(fa_path, m)
    assert str(err.value).startswith(str(m)) and words in str(err.value)


def test_fa_without_positive_voxel_and_no_mask(tmp_path):
    path = _save(tmp_path / "fa.nii.gz", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(InputError, match="no positive voxel"):
        load_fa_with_mask(path)
    assert not load_fa_with_mask(path, allow_empty=True).mask.any()
