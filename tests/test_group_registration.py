"""Real SimpleITK registration of misaligned synthetic brains to the generator's template."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hcp_cam.errors import InputError
from hcp_cam.group import (
    RegistrationSettings,
    array_from_sitk,
    inverse_transform,
    known_cam_voxels,
    register,
    resample,
    to_sitk,
)
from hcp_cam.group.images import affine_from_sitk_transform, lps_to_ras, ras_to_lps
from hcp_cam.group.registration import cached_registration, load_registration
from hcp_cam.synth import make_affine, make_phantom, make_subject

SHAPE = (40, 48, 40)  # the demo grid: 2.5 mm voxels


@pytest.fixture(scope="module")
def average():
    return make_phantom(SHAPE, rng=None)


def _edge_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    edge = mask & ~ndimage.binary_erosion(mask)
    idx = np.argwhere(edge)
    return np.c_[idx, np.ones(len(idx))] @ affine.T


def test_to_sitk_matches_simpleitk_reading_the_same_file(tmp_path):
    affine = make_affine((12, 14, 10), (2.0, 2.5, 3.0), oblique_deg=17.0)
    data = np.random.default_rng(0).random((12, 14, 10)).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, 1)
    img.set_qform(affine, 1)
    nib.save(img, tmp_path / "x.nii.gz")
    read = sitk.ReadImage(str(tmp_path / "x.nii.gz"))
    ours = to_sitk(data, affine)
    np.testing.assert_allclose(ours.GetOrigin(), read.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(ours.GetSpacing(), read.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(ours.GetDirection(), read.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(array_from_sitk(ours), array_from_sitk(read))
    # a voxel's world point: nibabel RAS = diag(-1, -1, 1) SimpleITK LPS
    point = np.asarray(ours.TransformIndexToPhysicalPoint((3, 5, 7)))
    np.testing.assert_allclose(point * [-1, -1, 1], (affine @ [3, 5, 7, 1])[:3], atol=1e-4)
    m = np.eye(4)
    m[:3, 3] = [1, 2, 3]
    np.testing.assert_allclose(lps_to_ras(ras_to_lps(m)), m)
    assert ras_to_lps(m)[0, 3] == -1


def test_a_sheared_affine_is_refused():
    affine = np.eye(4)
    affine[0, 1] = 0.3
    with pytest.raises(InputError, match="sheared"):
        to_sitk(np.zeros((4, 4, 4), np.float32), affine, "sheared.nii.gz")


def test_transform_recovered_within_1mm_at_the_brains_edge(average):
    """Identical anatomy moved by up to 10 degrees and 6 mm: the true transform is rigid and known."""
    for seed in (1, 5):
        s = make_subject("1", "old", shape=SHAPE, seed=[0, seed], snr=None, misalign=True, jitter=0.0)
        reg = register(to_sitk(average.fa, s.affine), to_sitk(s.fa, s.affine))
        pts = _edge_points(average.mask > 0, s.affine)
        err = np.linalg.norm((pts @ reg.matrix_ras.T)[:, :3] - (pts @ s.template_to_subject.T)[:, :3], axis=1)
        moved = np.linalg.norm((pts @ s.template_to_subject.T)[:, :3] - pts[:, :3], axis=1)
        assert moved.max() > 3.0  # the misalignment itself is several mm at the edge
        assert err.max() < 1.0, f"seed {seed}: {err.max():.2f} mm"


def test_registered_subjects_overlap_in_template_space(average):
    """Subjects with their own size, shape and texture, moved inside their grids, noise-free."""
    fixed = to_sitk(average.fa, make_affine(SHAPE))
    brain = average.mask > 0
    rois = []
    for seed in range(3):
        s = make_subject(str(seed), "old", shape=SHAPE, seed=[3, seed], snr=None, misalign=True)
        reg = register(fixed, to_sitk(s.fa, s.affine))
        warped = resample(s.fa, s.affine, fixed, reg.transform, "linear")
        assert np.corrcoef(warped[brain], average.fa[brain])[0, 1] >= 0.9
        roi = resample(s.roi, s.affine, fixed, reg.transform, "nearest") > 0
        rois.append(roi)
        raw = s.roi > 0  # without registration the region lies elsewhere
        assert 2 * (roi & (average.roi > 0)).sum() / (roi.sum() + average.roi.sum()) >= 0.8
        assert 2 * (raw & roi).sum() / (raw.sum() + roi.sum()) < 0.8
    for a in range(len(rois)):
        for b in range(a + 1, len(rois)):
            assert 2 * (rois[a] & rois[b]).sum() / (rois[a].sum() + rois[b].sum()) >= 0.8


def test_cam_voxels_unknown_before_stay_unknown_after_warping():
    affine = make_affine((20, 20, 20))
    cam = np.zeros((20, 20, 20), np.float32)
    cam[6:14, 6:14, 6:14] = np.linspace(1, 2, 8)[None, None, :]  # the known block, 0 elsewhere
    fixed = to_sitk(cam, affine)
    shift = sitk.TranslationTransform(3, (2.5, 0.0, 0.0))  # one voxel
    out = resample(cam, affine, fixed, shift, "cam")
    known = np.isfinite(out)
    assert known.sum() == known_cam_voxels(cam).sum()  # a block of the same size, moved
    assert not (out[known] == 0).any() and np.isnan(out[0, 0, 0])
    np.testing.assert_allclose(out[known].min(), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[known].max(), 2.0, atol=1e-6)
    part = sitk.TranslationTransform(
        3, (1.0, 0.0, 0.0)
    )  # 0.4 voxel: edge voxels interpolate known values only
    out = resample(cam, affine, fixed, part, "cam")
    # the block moves 0.4 voxel: one face's neighbours become 60% known (in), the other face 40% (out)
    assert np.isfinite(out).sum() == known_cam_voxels(cam).sum()
    assert np.nanmin(out) >= 1.0 - 1e-6
    lin = resample(cam, affine, fixed, part, "linear")
    assert np.nanmin(lin[np.isfinite(out)]) < 0.7  # plain interpolation mixes in the zeros


SMALL = (24, 28, 24)  # for what does not need the demo grid: I/O, caching, inverses


@pytest.fixture(scope="module")
def small():
    """A small template and one moved subject on its grid."""
    average = make_phantom(SMALL, rng=None)
    s = make_subject("1", "old", shape=SMALL, seed=[0, 2], snr=None, misalign=True)
    return to_sitk(average.fa, s.affine), to_sitk(s.fa, s.affine), average


def test_inverse_maps_points_back(small):
    fixed, moving, _ = small
    for settings in (RegistrationSettings(), RegistrationSettings(deformable="demons", demons_iterations=5)):
        reg = register(fixed, moving, settings)
        inv = inverse_transform(reg.transform, fixed)
        for p in ((5.0, -5.0, 10.0), (-15.0, 8.0, 0.0)):
            back = inv.TransformPoint(reg.transform.TransformPoint(p))
            assert np.linalg.norm(np.subtract(back, p)) < 0.5


def test_transforms_are_written_once_and_reused(tmp_path, small):
    fixed, moving, _ = small
    settings = RegistrationSettings()
    prov = {"template_sha256": "a", "fa_sha256": "b"}
    reg, reused = cached_registration(fixed, moving, settings, tmp_path, "100206", prov, extra={"fa": "x"})
    assert not reused
    record = json.loads((tmp_path / "100206.json").read_text())
    assert record["files"] == ["100206_affine.tfm"] and record["fa"] == "x"
    np.testing.assert_allclose(record["template_to_subject_ras"], reg.matrix_ras)
    again, reused = cached_registration(fixed, moving, settings, tmp_path, "100206", prov)
    assert reused
    np.testing.assert_allclose(again.matrix_ras, reg.matrix_ras, atol=1e-9)
    np.testing.assert_allclose(
        affine_from_sitk_transform(load_registration(tmp_path, "100206")[0].affine), reg.matrix_ras
    )
    _, reused = cached_registration(
        fixed, moving, settings, tmp_path, "100206", {**prov, "template_sha256": "c"}
    )
    assert not reused  # made against another template: registered again


def test_bspline_refinement_writes_and_reads_its_grid(tmp_path, small):
    fixed, moving, average = small
    settings = RegistrationSettings(deformable="bspline", bspline_iterations=3, bspline_spacing_mm=30.0)
    reg, _ = cached_registration(fixed, moving, settings, tmp_path, "k", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json", "k_affine.tfm", "k_bspline.tfm"]
    loaded, _ = load_registration(tmp_path, "k")
    assert loaded.deformable is not None
    for p in ((5.0, -5.0, 10.0), (-15.0, 8.0, 0.0)):
        np.testing.assert_allclose(
            loaded.transform.TransformPoint(p), reg.transform.TransformPoint(p), atol=1e-6
        )
