"""Tests of hcp_cam.synth: anatomy, gradients, signal, reproducibility and the written layouts."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from dipy.core.gradients import gradient_table
from dipy.io import read_bvals_bvecs
from dipy.reconst.dti import TensorModel
from scipy import ndimage

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.synth import (
    AGE_BANDS,
    DEFAULT_SHAPE,
    MANIFEST,
    draw_participants,
    generate_dataset,
    make_affine,
    make_dwi,
    make_gradient_scheme,
    make_subject,
    write_dwi_nifti,
)
from hcp_cam.synth.phantom import CSF, GM, WM

TINY = (12, 14, 12)
SMALL = {"shape": TINY, "n_b0": 1, "n_per_shell": 3, "progress": False}  # 10 volumes


def _centre_slab(n: int, k: int = 16) -> slice:
    """The default 2.5D input: the centre k slices of an axis."""
    start = max(0, n // 2 - k // 2)
    return slice(start, start + k)


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- reproducibility


def test_same_seed_gives_identical_arrays_different_seed_differs():
    scheme = make_gradient_scheme(1, 3, seed=0)
    a = make_subject(group="old", shape=(14, 16, 14), seed=5, scheme=scheme)
    b = make_subject(group="old", shape=(14, 16, 14), seed=5, scheme=scheme)
    c = make_subject(group="old", shape=(14, 16, 14), seed=6, scheme=scheme)
    dwi_a = a.dwi()
    assert dwi_a.dtype == np.float32 and dwi_a.shape == (10, 14, 16, 14)
    assert dwi_a.tobytes() == b.dwi().tobytes()
    assert dwi_a.tobytes() == a.dwi().tobytes()  # regenerated on each call, identically
    assert a.fa.tobytes() == b.fa.tobytes() and a.roi.tobytes() == b.roi.tobytes()
    assert not np.array_equal(dwi_a, c.dwi())
    assert not np.array_equal(a.fa, c.fa)


def test_dataset_files_are_byte_identical_for_the_same_seed(tmp_path):
    one = generate_dataset(tmp_path / "a", n_subjects=2, seed=11, **SMALL)
    two = generate_dataset(tmp_path / "b", n_subjects=2, seed=11, **SMALL)
    other = generate_dataset(tmp_path / "c", n_subjects=2, seed=12, **SMALL)
    files = _files(one.root)
    assert files == _files(two.root) and len(files) == 2 * 6 + 3
    for rel in files:
        assert (one.root / rel).read_bytes() == (two.root / rel).read_bytes(), rel
    a = nib.load(one.acquisitions[one.subjects[0]][0].dwi).get_fdata()
    c = nib.load(other.acquisitions[other.subjects[0]][0].dwi).get_fdata()
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------- gradients and geometry


def test_gradient_scheme_shells_drift_and_spread():
    s = make_gradient_scheme()
    assert s.n == 33 and s.bvals.shape == (33,) and s.bvecs.shape == (33, 3)
    assert s.b0_mask[0] and s.b0_mask.sum() == 3 and np.all(s.bvals[s.b0_mask] == 5)
    assert np.all(s.bvecs[s.b0_mask] == 0)
    np.testing.assert_allclose(np.linalg.norm(s.bvecs[~s.b0_mask], axis=1), 1.0, atol=1e-5)
    for shell in (1000, 2000, 3000):
        in_shell = np.abs(s.bvals - shell) <= 15
        assert in_shell.sum() == 10
        g = s.bvecs[in_shell]
        cos = np.abs(g @ g.T) - 2 * np.eye(10)  # antipodes are the same measurement
        assert np.degrees(np.arccos(cos.max())) > 20, "directions of a shell are not spread"
    assert len(set(s.bvals[~s.b0_mask])) > 3, "no HCP-like drift"
    exact = make_gradient_scheme(drift=False)
    assert set(exact.bvals) == {5.0, 1000.0, 2000.0, 3000.0}
    hcp = make_gradient_scheme(18, 90)
    assert hcp.n == 288 and hcp.b0_mask.sum() == 18


@pytest.mark.parametrize(
    "kwargs", [{"n_b0": 0}, {"n_per_shell": 1}, {"shells": (0.0,)}, {"shells": ()}, {"seed": -1}]
)
def test_gradient_scheme_rejects_bad_counts(kwargs):
    with pytest.raises(ConfigError):
        make_gradient_scheme(**kwargs)


def test_fsl_files_round_trip_and_x_flip_for_positive_determinant(tmp_path):
    s = make_gradient_scheme(2, 4, seed=3)
    las = make_affine(TINY)
    s.write_fsl(tmp_path / "bvals", tmp_path / "bvecs", las)
    bvals_txt = np.loadtxt(tmp_path / "bvals", ndmin=2)
    bvecs_txt = np.loadtxt(tmp_path / "bvecs")
    assert bvals_txt.shape == (1, s.n) and bvecs_txt.shape == (3, s.n)
    np.testing.assert_array_equal(bvals_txt[0], s.bvals)
    np.testing.assert_allclose(bvecs_txt.T, s.bvecs, atol=5e-7)
    bvals, bvecs = read_bvals_bvecs(str(tmp_path / "bvals"), str(tmp_path / "bvecs"))
    assert bvecs.shape == (s.n, 3)
    ras = las @ np.diag([-1.0, 1.0, 1.0, 1.0])
    s.write_fsl(tmp_path / "bvals2", tmp_path / "bvecs2", ras)
    flipped = np.loadtxt(tmp_path / "bvecs2").T
    np.testing.assert_allclose(flipped[:, 0], -s.bvecs[:, 0], atol=5e-7)
    np.testing.assert_allclose(flipped[:, 1:], s.bvecs[:, 1:], atol=5e-7)


@pytest.mark.parametrize("voxel_size", [(2.5, 2.5, 2.5), (1.25, 1.25, 1.5)])
@pytest.mark.parametrize("oblique", [0.0, 8.0])
def test_affine_is_las_and_rigid(voxel_size, oblique):
    aff = make_affine(DEFAULT_SHAPE, voxel_size, oblique)
    lin = aff[:3, :3]
    assert nib.aff2axcodes(aff) == ("L", "A", "S") and np.linalg.det(lin) < 0
    np.testing.assert_allclose(lin.T @ lin, np.diag(np.square(voxel_size)), atol=1e-12)  # no shear
    off_diagonal = np.abs(lin - np.diag(np.diag(lin))).max()
    assert (off_diagonal > 0.05) == (oblique > 0)
    centre = aff @ np.append((np.array(DEFAULT_SHAPE) - 1) / 2, 1.0)
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)


# ---------------------------------------------------------------- ground truth


def test_true_fa_and_directions_match_a_dipy_fit_of_the_noise_free_signal():
    subj = make_subject(group="old", shape=(16, 18, 16), seed=3, snr=None)
    gtab = gradient_table(subj.scheme.bvals, bvecs=subj.scheme.bvecs)
    wm = subj.phantom.tissue == WM
    fit = TensorModel(gtab).fit(np.moveaxis(subj.dwi(noise=False), 0, -1), mask=wm)
    assert wm.sum() > 500
    assert np.abs(fit.fa[wm] - subj.fa[wm]).max() < 1e-3
    tracts = subj.phantom.tract > 0
    cos = np.abs(np.sum(fit.evecs[..., 0] * subj.phantom.v1, axis=-1))[tracts]
    assert tracts.sum() > 20 and cos.min() > 0.999


def test_true_fa_file_matches_a_dipy_fit_of_the_written_noise_free_data(tmp_path):
    ds = generate_dataset(tmp_path / "d", n_subjects=1, seed=2, snr=None, oblique_deg=10.0, **SMALL)
    acq = ds.acquisitions[ds.subjects[0]][0]
    data = nib.load(acq.dwi).get_fdata(dtype=np.float32)
    mask = nib.load(acq.mask).get_fdata() > 0
    bvals, bvecs = read_bvals_bvecs(str(acq.bvals), str(acq.bvecs))
    fit = TensorModel(gradient_table(bvals, bvecs=bvecs)).fit(data, mask=mask)
    true_fa = nib.load(ds.true_fa[ds.subjects[0]]).get_fdata()
    assert np.abs(fit.fa[mask] - true_fa[mask]).max() < 1e-3
    assert true_fa[mask].max() > 0.6


def test_tissues_have_realistic_diffusivities():
    p = make_subject(seed=0).phantom
    fa = p.fa
    assert 0.6 < fa[(p.tissue == WM) & (p.tract > 0)].mean() < 0.85
    assert 0.5 < fa[(p.tissue == WM) & (p.tract == 0)].mean() < 0.75
    assert 0.1 < fa[p.tissue == GM].mean() < 0.2
    assert (p.tissue == CSF).sum() > 50 and fa[p.tissue == CSF].max() < 1e-6
    np.testing.assert_allclose(p.ad[p.tissue == CSF], 3e-3, rtol=0.15)
    assert set(np.unique(p.tract)) == {0, 1, 2, 3}
    np.testing.assert_allclose(np.linalg.norm(p.v1[p.tissue >= GM], axis=-1), 1.0, atol=1e-5)
    mask = p.mask
    assert ndimage.label(mask)[1] == 1
    for axis in range(3):  # brain-shaped: clear of the grid border on every face
        assert not mask.take([0, -1], axis=axis).any()


def test_old_subjects_have_lower_fa_only_in_the_region():
    young = make_subject(group="young", seed=4).phantom
    old = make_subject(group="old", seed=4).phantom
    roi = young.roi.astype(bool)
    np.testing.assert_array_equal(roi, old.roi)
    assert np.all(young.tissue[roi] == WM) and roi.sum() > 100
    np.testing.assert_array_equal(young.fa[~roi], old.fa[~roi])
    assert np.all(old.fa[roi] < young.fa[roi])
    assert young.fa[roi].mean() - old.fa[roi].mean() > 0.08


def test_group_effect_is_strong_in_the_region_and_absent_elsewhere():
    """Learnability proxy: ROI FA separates the groups; FA elsewhere does not."""
    young = [make_subject(group="young", seed=s).phantom for s in (0, 1, 2)]
    old = [make_subject(group="old", seed=s).phantom for s in (3, 4, 5)]

    def means(ps, inside):
        return np.array([p.fa[((p.roi > 0) == inside) & (p.tissue == WM)].mean() for p in ps])

    assert means(young, True).min() > means(old, True).max() + 0.05
    assert abs(means(young, False).mean() - means(old, False).mean()) < 0.02


@pytest.mark.parametrize("shape", [DEFAULT_SHAPE, (29, 35, 29), (64, 76, 64)])
def test_region_is_cut_by_the_centre_slices_along_every_axis(shape):
    for seed in (0, 1, 2):
        roi = make_subject(group="old", shape=shape, seed=seed).roi
        for axis in range(3):
            others = tuple(a for a in range(3) if a != axis)
            per_slice = roi.sum(axis=others)[_centre_slab(shape[axis])]
            assert (per_slice > 0).sum() >= 4, (
                f"axis {axis}: region in {(per_slice > 0).sum()} of 16 centre slices"
            )


@pytest.mark.parametrize("shape", [DEFAULT_SHAPE, (64, 76, 64)])
def test_region_is_solid_around_its_centre(shape):
    """The planted region is no shell: its centre of mass and the voxels next to it are in it, so a
    map that peaks at the middle of the effect hits the region (the pointing game can be won)."""
    for seed in (0, 1, 2):
        roi = make_subject(group="old", shape=shape, seed=seed).roi > 0
        c = np.round(np.argwhere(roi).mean(0)).astype(int)
        assert roi[tuple(c)], f"seed {seed}: the region's centre {tuple(c)} is not in the region"
        near = roi[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2]
        assert near.mean() >= 0.9, f"seed {seed}: {near.sum()} of 27 voxels around the centre in the region"


def test_rician_noise_level_and_masked_output():
    subj = make_subject(shape=(20, 24, 20), seed=1, snr=20.0)
    b0 = next(subj.volumes())
    outside = subj.mask == 0
    # Rayleigh background: mean sigma * sqrt(pi / 2)
    np.testing.assert_allclose(b0[outside].mean(), 50.0 * np.sqrt(np.pi / 2), rtol=0.05)
    wm = subj.phantom.tissue == WM
    np.testing.assert_allclose(b0[wm].mean(), 1000.0, rtol=0.05)
    masked = next(subj.volumes(mask_output=True))
    assert np.all(masked[outside] == 0) and np.array_equal(masked[~outside], b0[~outside])


def test_make_dwi_is_channel_first_float32():
    d = make_dwi((12, 14, 12), n_b0=2, n_per_shell=3, seed=1)
    assert d.dwi.shape == (11, 12, 14, 12) and d.dwi.dtype == np.float32
    assert d.bvals.shape == (11,) and d.bvecs.shape == (11, 3) and (d.bvals == 5).sum() == 2
    assert d.mask.dtype == np.uint8 and d.fa.shape == (12, 14, 12) and d.affine.shape == (4, 4)


# ---------------------------------------------------------------- participants and layouts


def test_participants_ids_ages_and_balance():
    p = draw_participants(7, seed=3)
    assert list(p.columns) == ["subject", "age", "group"]
    assert (p["group"] == "old").sum() == 3 and (p["group"] == "young").sum() == 4
    assert p["subject"].is_unique and all(re.fullmatch(r"[1-9]\d{5}", s) for s in p["subject"])
    for group, bands in AGE_BANDS.items():
        for age in p.loc[p["group"] == group, "age"]:
            assert any(lo <= age <= hi for lo, hi in bands), (group, age)
    pd.testing.assert_frame_equal(p, draw_participants(7, seed=3))
    assert not p["subject"].equals(draw_participants(7, seed=4)["subject"])
    assert list(draw_participants(1)["group"]) == ["young"]


def test_minimal_layout_files_load_with_the_same_geometry(tmp_path):
    ds = generate_dataset(tmp_path / "out", n_subjects=3, seed=1, voxel_size=(1.25, 1.25, 1.5), **SMALL)
    assert ds.layout == "minimal" and len(ds.subjects) == 3
    table = pd.read_csv(tmp_path / "out" / "participants.csv", dtype={"subject": str})
    assert list(table.columns) == ["subject", "age", "group"] and list(table["subject"]) == ds.subjects
    for sid in ds.subjects:
        d = tmp_path / "out" / sid / "T1w" / "Diffusion"
        img, mask = nib.load(d / "data.nii.gz"), nib.load(d / "nodif_brain_mask.nii.gz")
        assert img.shape == (*TINY, 10) and img.get_data_dtype() == np.float32
        assert mask.shape == TINY and mask.get_data_dtype() == np.uint8
        np.testing.assert_allclose(img.header.get_zooms()[:3], (1.25, 1.25, 1.5), rtol=1e-6)
        for other in (mask, nib.load(ds.true_fa[sid]), nib.load(ds.roi[sid])):
            np.testing.assert_allclose(other.affine, img.affine, atol=1e-6)
        assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
        assert int(img.header["sform_code"]) == int(img.header["qform_code"]) == 1
        np.testing.assert_allclose(img.get_sform(), img.get_qform(), atol=1e-5)
        data = img.get_fdata()
        assert np.all(data[mask.get_fdata() == 0] == 0) and data[mask.get_fdata() > 0].min() > 0
        assert np.loadtxt(d / "bvals", ndmin=2).shape == (1, 10) and np.loadtxt(d / "bvecs").shape == (3, 10)
        assert nib.load(ds.roi[sid]).get_data_dtype() == np.uint8
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["parameters"]["seed"] == 1 and len(manifest["subjects"]) == 3
    assert (
        (tmp_path / "out" / "derivatives" / "ground_truth" / "README.txt").read_text().startswith("Synthetic")
    )
    assert not list((tmp_path / "out").rglob("*.tmp*")), "temporary files left behind"


def test_unprocessed_layout_has_runs_and_no_mask(tmp_path):
    ds = generate_dataset(tmp_path / "raw", n_subjects=2, seed=1, layout="unprocessed", n_runs=2, **SMALL)
    pattern = re.compile(r"(\d{6})_3T_DWI_dir(\d+)_(RL|LR)\.nii\.gz")
    for sid in ds.subjects:
        d = tmp_path / "raw" / sid / "unprocessed" / "3T" / "Diffusion"
        names = sorted(p.name for p in d.glob("*.nii.gz"))
        assert len(names) == 4 and len(ds.acquisitions[sid]) == 4
        for name in names:
            m = pattern.fullmatch(name)
            assert m and m.group(1) == sid
            img = nib.load(d / name)
            assert img.shape[3] == int(m.group(2)) and img.get_data_dtype() == np.int16
            stem = name[: -len(".nii.gz")]
            assert np.loadtxt(d / f"{stem}.bval").shape == (img.shape[3],)
            assert np.loadtxt(d / f"{stem}.bvec").shape == (3, img.shape[3])
        assert not list((tmp_path / "raw" / sid).rglob("*mask*"))
        rl, lr = (nib.load(a.dwi).get_fdata() for a in ds.acquisitions[sid][:2])
        assert not np.array_equal(rl, lr)  # independent noise per run
        assert rl[..., 0][nib.load(ds.true_fa[sid]).get_fdata() == 0].mean() > 5  # noisy background
        assert ds.roi[sid].exists()


def test_refuses_a_foreign_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        generate_dataset(out, n_subjects=2, **SMALL)
    assert _files(out) == ["notes.txt"]
    generate_dataset(out, n_subjects=2, overwrite=True, **SMALL)
    assert (out / "notes.txt").read_text() == "mine" and (out / "participants.csv").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        generate_dataset(tmp_path / "file", n_subjects=1, **SMALL)


def test_rewriting_a_previous_output_removes_its_stale_subjects(tmp_path):
    out = tmp_path / "ds"
    first = generate_dataset(out, n_subjects=4, seed=0, **SMALL)
    second = generate_dataset(out, n_subjects=2, seed=1, **SMALL)
    for sid in set(first.subjects) - set(second.subjects):
        assert not (out / sid).exists() and not first.true_fa[sid].exists()
    assert sorted(p.name for p in out.iterdir() if p.name.isdigit()) == sorted(second.subjects)
    assert len(pd.read_csv(out / "participants.csv")) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_subjects": 0},
        {"layout": "bids"},
        {"shape": (4, 4, 4)},
        {"snr": 0.0},
        {"effect_size": -0.1},
        {"n_runs": 0},
        {"voxel_size": (1.0, 0.0, 1.0)},
    ],
)
def test_bad_parameters_raise_before_writing(tmp_path, kwargs):
    params = {"n_subjects": 2, **SMALL, **kwargs}
    with pytest.raises(ConfigError):
        generate_dataset(tmp_path / "never", **params)
    assert not (tmp_path / "never").exists()


def test_streaming_writer_round_trip_and_wrong_count(tmp_path):
    rng = np.random.default_rng(0)
    vols = [rng.uniform(-10, 40000, TINY).astype(np.float32) for _ in range(3)]
    aff = make_affine(TINY, oblique_deg=5)
    path = write_dwi_nifti(tmp_path / "f.nii.gz", vols, TINY, 3, aff)
    img = nib.load(path)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), np.stack(vols, axis=-1))
    np.testing.assert_allclose(img.affine, aff, atol=1e-6)
    ints = nib.load(write_dwi_nifti(tmp_path / "i.nii.gz", vols, TINY, 3, aff, np.int16)).get_fdata()
    np.testing.assert_array_equal(ints, np.clip(np.rint(np.stack(vols, axis=-1)), -32768, 32767))
    with pytest.raises(InputError, match="expected 4"):
        write_dwi_nifti(tmp_path / "bad.nii.gz", vols, TINY, 4, aff)
    assert not (tmp_path / "bad.nii.gz").exists() and not list(tmp_path.glob(".*tmp*"))
