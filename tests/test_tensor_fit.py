"""Tensor fit: torch WLS against DIPY's TensorModel and against analytic FA of known tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dipy.reconst.dti import fractional_anisotropy as dipy_fa
from dwi_fixtures import analytic_fa, write_dwi
from monai.data import MetaTensor

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.transforms import (
    DTIFit,
    DTIFitd,
    LoadDWI,
    fit_tensor_dipy,
    fit_tensor_torch,
    fractional_anisotropy,
)


def _load(tmp_path, **kw):
    f = write_dwi(tmp_path, **kw)
    dwi, mask = LoadDWI()(f.dwi, f.bvals, f.bvecs, f.mask)
    return f, dwi, mask


@pytest.mark.parametrize("backend", ["torch", "dipy"])
def test_noise_free_matches_analytic_fa(backend, tmp_path):
    f, dwi, mask = _load(tmp_path, seed=7)
    out = DTIFit(metrics=("fa", "md", "ad", "rd", "v1", "color_fa"), backend=backend, device="cpu")(dwi, mask)
    fa = out["fa"].numpy()[0]
    m = f.mask_array
    assert np.abs(fa[m] - f.fa[m]).max() < 1e-4
    assert np.all(fa[~m] == 0)
    ev = f.evals[m]
    np.testing.assert_allclose(out["md"].numpy()[0][m], ev.mean(-1), atol=1e-8)
    np.testing.assert_allclose(out["ad"].numpy()[0][m], ev[:, 0], atol=1e-8)
    np.testing.assert_allclose(out["rd"].numpy()[0][m], ev[:, 1:].mean(-1), atol=1e-8)
    # principal direction (sign-free) where l1 is clearly the largest
    clear = (ev[:, 0] - ev[:, 1]) > 0.2 * ev[:, 0]
    v1 = np.moveaxis(out["v1"].numpy(), 0, -1)[m][clear]
    assert np.abs((v1 * f.v1[m][clear]).sum(-1)).min() > 0.999
    np.testing.assert_allclose(
        out["color_fa"].numpy(), np.abs(out["v1"].numpy()) * out["fa"].numpy(), atol=1e-6
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_matches_dipy_on_rician_noise(dtype, tmp_path):
    f, dwi, mask = _load(tmp_path, noise_sigma=40.0, zero_voxels=3, seed=11)
    ref = DTIFit(backend="dipy")(dwi, mask)["fa"].numpy()[0]
    got = DTIFit(backend="torch", device="cpu", dtype=dtype, chunk_size=97)(dwi, mask)["fa"].numpy()[0]
    m = f.mask_array
    assert np.abs(got[m] - ref[m]).max() < 1e-3
    assert np.abs(ref[m] - f.fa[m]).max() > 1e-2  # the noise is real: the test could fail


def test_pure_fit_matches_dipy_per_voxel(tmp_path):
    f = write_dwi(tmp_path, noise_sigma=25.0, seed=2)
    sig = f.data[f.mask_array]
    ev_d, vec_d = fit_tensor_dipy(sig, f.bvals_array, f.bvecs_array)
    ev_t, vec_t = fit_tensor_torch(sig, f.bvals_array, f.bvecs_array, dtype=torch.float64)
    assert ev_t.shape == (len(sig), 3) and vec_t.shape == (len(sig), 3, 3)
    np.testing.assert_allclose(ev_t.numpy(), ev_d, atol=1e-9)
    np.testing.assert_allclose(fractional_anisotropy(ev_t).numpy(), dipy_fa(ev_d), atol=1e-7)
    assert (ev_t >= 0).all() and (ev_t[:, :-1] >= ev_t[:, 1:]).all()  # clipped, descending


def test_zero_and_nonpositive_signal_give_fa_zero(tmp_path):
    f, dwi, mask = _load(tmp_path, zero_voxels=5, seed=3)
    arr = dwi.clone()
    arr[:, 2, 3, 4] = -5.0  # negative signal everywhere
    arr[:, 6, 7, 5] = 0.0
    arr[:2, 6, 6, 5] = 0.0  # b0 zero, diffusion-weighted positive
    arr[:, 5, 5, 5] = 1e30  # absurd but finite
    for backend in ("torch", "dipy"):
        out = DTIFit(metrics=("fa", "md", "v1", "color_fa"), backend=backend, device="cpu")(arr, mask)
        for v in out.values():
            assert torch.isfinite(v).all()
        fa = out["fa"][0]
        assert fa[2, 3, 4] == 0 and fa[6, 7, 5] == 0 and fa[6, 6, 5] == 0
        assert ((fa >= 0) & (fa <= 1)).all()
        zero_vox = (f.data.sum(-1) == 0) & f.mask_array
        assert zero_vox.sum() >= 5 and bool((fa.numpy()[zero_vox] == 0).all())


def test_outputs_are_metatensors_with_the_dwi_affine(tmp_path):
    f, dwi, mask = _load(tmp_path, affine="oblique", n_per_shell=6)
    out = DTIFitd(metrics=("fa", "v1"), device="cpu")({"dwi": dwi, "mask": mask, "subject": "s1"})
    assert out["subject"] == "s1" and out["dwi"] is dwi
    for key, channels in (("fa", 1), ("v1", 3)):
        t = out[key]
        assert isinstance(t, MetaTensor) and t.shape == (channels, 12, 14, 10) and t.dtype == torch.float32
        np.testing.assert_array_equal(t.affine.numpy(), dwi.affine.numpy())
        np.testing.assert_allclose(t.affine.numpy(), f.affine, atol=1e-5)  # float32 in the header
        assert t.meta["filename_or_obj"] == str(f.dwi) and t.meta["metric"] == key
        assert "bvals" not in t.meta
    no_mask = DTIFitd(device="cpu", mask_key=None)({"dwi": dwi})["fa"]
    np.testing.assert_allclose(
        no_mask.numpy()[0][f.mask_array], out["fa"].numpy()[0][f.mask_array], atol=1e-6
    )


def test_bvec_sign_and_axis_flips(tmp_path):
    """All signs flipped: same tensor. One axis flipped: FA unchanged, V1 mirrored in that axis."""
    f = write_dwi(tmp_path, noise_sigma=10.0, seed=5)
    sig = f.data[f.mask_array]
    ev, vec = fit_tensor_torch(sig, f.bvals_array, f.bvecs_array)
    ev_neg, vec_neg = fit_tensor_torch(sig, f.bvals_array, -f.bvecs_array)
    flip = f.bvecs_array * np.array([-1.0, 1.0, 1.0])
    ev_x, vec_x = fit_tensor_torch(sig, f.bvals_array, flip)
    fa = fractional_anisotropy(ev)
    np.testing.assert_allclose(fractional_anisotropy(ev_neg), fa, atol=1e-6)
    np.testing.assert_allclose(fractional_anisotropy(ev_x), fa, atol=1e-6)
    v1, v1_neg, v1_x = vec[:, :, 0], vec_neg[:, :, 0], vec_x[:, :, 0]
    clear = (ev[:, 0] - ev[:, 1]) > 0.2 * ev[:, 0]
    assert (v1 * v1_neg).sum(-1).abs()[clear].min() > 0.999
    mirrored = v1 * torch.tensor([-1.0, 1.0, 1.0], dtype=v1.dtype)
    assert (mirrored * v1_x).sum(-1).abs()[clear].min() > 0.999
    # and the flip does change V1 where it has both an x and another component
    oblique = clear & (v1[:, 0].abs() > 0.3) & (v1[:, 0].abs() < 0.9)
    assert oblique.sum() > 3 and (v1 * v1_x).sum(-1).abs()[oblique].max() < 0.99


def test_fractional_anisotropy_function():
    ev = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.7e-3, 0.3e-3, 0.2e-3]])
    fa = fractional_anisotropy(ev)
    assert isinstance(fa, np.ndarray)
    np.testing.assert_allclose(fa, [0.0, 1.0, 0.0, analytic_fa(ev[3])], atol=1e-12)
    np.testing.assert_allclose(fa, np.nan_to_num(dipy_fa(ev)), atol=1e-12)
    t = fractional_anisotropy(torch.from_numpy(ev))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.from_numpy(fa))


def test_dipy_small_101d_real_data():
    """Real multi-shell scanner data (b 15..4065, LAS): torch WLS equals DIPY's within 1e-3."""
    import dipy

    folder = Path(dipy.__file__).parent / "data" / "files"
    files = [folder / n for n in ("small_101D.nii.gz", "small_101D.bval", "small_101D.bvec")]
    if not all(p.exists() for p in files):
        pytest.skip("DIPY's small_101D is not shipped with this installation")
    dwi, mask = LoadDWI()(*files)
    ref = DTIFit(backend="dipy")(dwi, mask)["fa"].numpy()
    got = DTIFit(backend="torch", device="cpu")(dwi, mask)["fa"].numpy()
    assert ref.max() > 0.3  # real anisotropic tissue in there
    assert np.abs(got - ref).max() < 1e-3


def test_bad_options_and_inputs(tmp_path):
    with pytest.raises(ConfigError, match="unknown tensor metrics"):
        DTIFit(metrics=("fa", "mode"))
    with pytest.raises(ConfigError, match="backend"):
        DTIFit(backend="fsl")
    with pytest.raises(ConfigError, match="device"):
        DTIFit(device="not-a-device")
    f, dwi, mask = _load(tmp_path, n_per_shell=6)
    with pytest.raises(InputError, match="mask shape"):
        DTIFit(device="cpu")(dwi, mask[:, :-1])
    with pytest.raises(InputError, match="no gradient table"):
        DTIFit(device="cpu")(torch.ones(20, 4, 4, 4))
