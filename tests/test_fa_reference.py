"""The FA path against references, with the cases the earlier tests let through (issue 17, test strength):
b-values and directions used as given (DIPY's small_101D), a fit whose eigenvalue goes negative, the
sform/qform codes of every output, a write interrupted half-way, a b-value exactly at the b0 threshold."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from dipy.core.gradients import gradient_table
from dipy.data import get_fnames
from dipy.io import read_bvals_bvecs
from dipy.reconst.dti import TensorModel
from dwi_fixtures import (
    make_affine,
    make_gradients,
    random_rotations,
    tensor_signal,
    write_dwi,
    write_gradients,
)

from hcp_cam.errors import InputError
from hcp_cam.fa_maps import compute_dataset_fa, compute_fa_file
from hcp_cam.io import save_nifti_like
from hcp_cam.transforms import DTIFit, LoadDWI, read_gradients
from hcp_cam.transforms.tensor_maps import fit_dti_maps


def _dipy_fa(dwi: Path, bvals: Path, bvecs: Path, b0_threshold: float = 50) -> np.ndarray:
    """DIPY end to end: its own reading of the gradient files, its TensorModel (WLS)."""
    b, g = read_bvals_bvecs(str(bvals), str(bvecs))
    model = TensorModel(gradient_table(b, bvecs=g, b0_threshold=b0_threshold))
    return np.nan_to_num(model.fit(nib.load(str(dwi)).get_fdata()).fa)


def test_fit_uses_b_and_direction_of_every_volume_as_given_like_dipy_small_101d(tmp_path):
    """small_101D (real scanner crop, LAS, uint16): its lowest b is 15, with a direction on file."""
    dwi, bvals, bvecs = (Path(p) for p in get_fnames(name="small_101D"))
    out = compute_fa_file(dwi, bvals, bvecs, None, tmp_path / "fa.nii.gz", device="cpu")["fa"]
    got = nib.load(str(out)).get_fdata()
    ref = _dipy_fa(dwi, bvals, bvecs)
    assert ref.max() > 0.3  # real anisotropic tissue
    assert np.abs(got - ref).max() < 1e-4
    # the test can fail: with the b=15 volume's direction zeroed, FA moves by ~2e-3
    vol_t, mask_t = LoadDWI()(dwi, bvals, bvecs)
    gt = read_gradients(bvals, bvecs)
    assert gt.b0_mask.sum() == 1 and np.linalg.norm(gt.bvecs[gt.b0_mask]) == pytest.approx(1.0)
    zeroed = np.array(gt.bvecs)
    zeroed[gt.b0_mask] = 0.0
    wrong = fit_dti_maps(vol_t.as_tensor(), gt.bvals, zeroed, gt.b0_mask)["fa"][0].numpy()
    assert np.abs(wrong - ref).max() > 1e-3


def test_b0_direction_zeroed_only_where_missing_nan_zero_or_not_unit(tmp_path):
    bvals, bvecs = make_gradients(shells=(1000.0,), n_per_shell=8, n_b0=4, b0_value=10.0, seed=4)
    given = bvecs.copy()
    given[0] = [0.6, 0.8, 0.0]  # a unit direction: kept
    given[1] = [np.nan] * 3  # missing (DIPY's small_64D): zero
    given[2] = [0.0, 0.0, 0.0]  # zero: zero
    given[3] = [0.3, 0.0, 0.0]  # not unit: DIPY drops it
    gt = read_gradients(*write_gradients(tmp_path, bvals, given), n_volumes=len(bvals))
    np.testing.assert_allclose(gt.bvecs[0], [0.6, 0.8, 0.0], atol=1e-8)
    np.testing.assert_array_equal(gt.bvecs[1:4], 0.0)
    ref = gradient_table(bvals, bvecs=np.nan_to_num(given), b0_threshold=50)
    np.testing.assert_allclose(gt.bvecs, ref.bvecs, atol=1e-8)  # DIPY's table, row for row


def _write(folder: Path, data: np.ndarray, affine: np.ndarray, qcode: int, scode: int, name: str) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(folder / name))
    return folder / name


def test_negative_eigenvalue_is_clipped_as_dipy_does(tmp_path):
    """A voxel whose exact tensor has eigenvalues (1.5, 0.5, -0.3) um^2/ms (signal above S0 along e3)."""
    bvals, bvecs = make_gradients(n_per_shell=10, seed=8)
    evals = np.array([[1.5e-3, 0.5e-3, -0.3e-3], [1.7e-3, 0.4e-3, 0.3e-3]])
    sig = tensor_signal(evals, random_rotations(2, seed=3), bvals, bvecs, s0=1000.0)
    data = sig.reshape(2, 1, 1, -1).astype(np.float32)
    dwi = _write(tmp_path, data, make_affine("ras"), 1, 1, "dwi.nii.gz")
    bv, bc = write_gradients(tmp_path, bvals, bvecs)
    paths = compute_fa_file(
        dwi, bv, bc, None, tmp_path / "o_fa.nii.gz", device="cpu", metrics=("fa", "md", "rd")
    )
    fa, md, rd = (nib.load(str(paths[m])).get_fdata()[:, 0, 0] for m in ("fa", "md", "rd"))
    # DIPY clips the negative eigenvalue to ~0: FA of (1.5, 0.5, 0) = sqrt(0.7)
    assert fa[0] == pytest.approx(np.sqrt(0.7), abs=1e-5)
    ref = TensorModel(gradient_table(bvals, bvecs=bvecs)).fit(data.astype(np.float64))
    np.testing.assert_allclose(fa, ref.fa.reshape(-1), atol=1e-5)
    np.testing.assert_allclose(md, ref.md.reshape(-1), rtol=1e-4)
    np.testing.assert_allclose(rd, ref.rd.reshape(-1), rtol=1e-4)
    assert rd[0] == pytest.approx(0.25e-3, rel=1e-3) and (rd >= 0).all()
    # the test can fail: unclipped, the same voxel has FA ~0.971 and RD 0.1e-3
    assert abs(fa[0] - 0.9706) > 0.1


def _codes(path: Path) -> tuple[int, int]:
    h = nib.load(str(path)).header
    return int(h["qform_code"]), int(h["sform_code"])


@pytest.mark.parametrize("codes", [(1, 2), (4, 3)])
def test_every_output_keeps_the_dwis_qform_and_sform_codes(codes, tmp_path):
    """qform 'scanner' (1) with sform 'aligned' (2), as scanners write them, and codes no default would
    give (4 'mni', 3 'talairach'); read from the header fields themselves."""
    f = write_dwi(tmp_path / "src", affine="oblique", n_per_shell=6, shape=(8, 9, 7))
    root = tmp_path / "data" / "100206" / "T1w" / "Diffusion"
    dwi = _write(root, f.data, f.affine, *codes, "data.nii.gz")
    write_gradients(root, f.bvals_array, f.bvecs_array, stem=None)
    _write(root, f.mask_array.astype(np.uint8), f.affine, *codes, "nodif_brain_mask.nii.gz")
    assert _codes(dwi) == codes
    paths = compute_fa_file(
        dwi, None, None, None, tmp_path / "out" / "s_fa.nii.gz", device="cpu", metrics=("fa", "md", "v1")
    )
    cached = compute_dataset_fa(tmp_path / "data", tmp_path / "cache", device="cpu", progress=False)
    ref = nib.load(str(dwi)).header
    for path in (*paths.values(), *cached):
        assert _codes(path) == codes, path
        h = nib.load(str(path)).header
        np.testing.assert_array_equal(h.get_qform(), ref.get_qform())
        np.testing.assert_array_equal(h.get_sform(), ref.get_sform())


class _Interrupted(KeyboardInterrupt):
    pass


def _save_then_interrupt(real_save):
    def save(img, filename):
        real_save(img, filename)  # the bytes are on disk...
        raise _Interrupted  # ...and the user presses Ctrl-C before the rename

    return save


def test_interrupted_write_leaves_no_final_file_and_no_temporary(tmp_path, monkeypatch):
    f = write_dwi(tmp_path / "in", n_per_shell=6, shape=(8, 9, 7))
    monkeypatch.setattr(nib, "save", _save_then_interrupt(nib.save))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(_Interrupted):
        save_nifti_like(np.zeros(f.mask_array.shape), nib.load(str(f.mask)), out / "map.nii.gz")
    assert list(out.iterdir()) == []
    with pytest.raises(_Interrupted):
        compute_fa_file(
            f.dwi, f.bvals, f.bvecs, f.mask, out / "s_fa.nii.gz", device="cpu", metrics=("fa", "md")
        )
    assert list(out.iterdir()) == []


def test_b_value_exactly_at_the_b0_threshold_is_a_b0(tmp_path):
    """b = 50 with b0_threshold 50 is a b0 (DIPY: b <= threshold); it is still fitted with its b and direction."""
    bvals, bvecs = make_gradients(shells=(1000.0, 2000.0), n_per_shell=8, n_b0=1, b0_value=50.0, seed=6)
    bvecs[0] = [0.0, 0.6, 0.8]
    gt = read_gradients(*write_gradients(tmp_path, bvals, bvecs), n_volumes=len(bvals), b0_threshold=50.0)
    ref = gradient_table(bvals, bvecs=bvecs, b0_threshold=50)
    assert gt.b0_mask[0] and gt.b0_mask.sum() == 1 and gt.shells[0] == 0
    np.testing.assert_array_equal(gt.b0_mask, ref.b0s_mask)
    np.testing.assert_allclose(gt.bvecs[0], [0.0, 0.6, 0.8])
    just_above = bvals.copy()
    just_above[0] = 50.5
    with pytest.raises(InputError, match="no b0 volume"):
        read_gradients(*write_gradients(tmp_path / "b", just_above, bvecs))
    # the fit: the b=50 volume weighted by its direction, as DIPY does
    evals = np.array([[1.7e-3, 0.3e-3, 0.2e-3]] * 4)
    data = tensor_signal(evals, random_rotations(4, seed=1), bvals, bvecs).astype(np.float32)
    dwi = torch.from_numpy(data.T.reshape(-1, 2, 2, 1).copy())
    fa = fit_dti_maps(dwi, gt.bvals, gt.bvecs, gt.b0_mask, dtype=torch.float64)["fa"].reshape(-1)
    dipy_fa = TensorModel(ref).fit(data.astype(np.float64)).fa
    np.testing.assert_allclose(fa.numpy(), dipy_fa, atol=1e-6)
    assert DTIFit(device="cpu")(dwi, gradients=gt)["fa"].shape == (1, 2, 2, 1)
