"""2.5D slicing (Slices25D, Slices25Dd, slice_indices) and stacking maps back (stack_slices)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from hcp_cam.transforms.slicing import (
    Slices25D,
    Slices25Dd,
    slice_affine,
    slice_indices,
    stack_slices,
    trained_slices,
)

SHAPE = (12, 14, 10)
# LAS, oblique (rotation about z), non-isotropic voxels
_ROT = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
AFFINE = np.eye(4)
AFFINE[:3, :3] = _ROT @ np.diag([-1.25, 1.25, 2.0])
AFFINE[:3, 3] = [40.0, -30.0, -12.0]


def _volume(seed: int = 0) -> MetaTensor:
    g = torch.Generator().manual_seed(seed)
    return MetaTensor(torch.rand((1, *SHAPE), generator=g), affine=torch.as_tensor(AFFINE))


def _box_mask(lo=(2, 3, 1), hi=(9, 11, 8)) -> torch.Tensor:
    m = torch.zeros((1, *SHAPE))
    m[0, lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = 1
    return m


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_round_trip_all_slices_exact(axis):
    vol = _volume()
    items = Slices25Dd("fa", mask_key=None, selection="mask", axes=(axis,))({"fa": vol})
    assert len(items) == SHAPE[axis]
    stacked, covered = stack_slices([it["image"] for it in items], axis, [it["index"] for it in items], SHAPE)
    assert stacked.dtype == torch.float32 and covered.dtype == torch.bool
    assert torch.equal(stacked, vol[0].as_tensor())
    assert bool(covered.all())


def test_round_trip_subset_marks_coverage():
    vol = _volume(1)
    items = Slices25Dd("fa", mask_key=None, selection="centre", k=3, axes=(1,))({"fa": vol})
    idx = [it["index"] for it in items]
    assert idx == [5, 6, 7]  # centre 6.5 of 14 slices
    stacked, covered = stack_slices([it["image"][0] for it in items], 1, idx, SHAPE)  # (H, W) maps too
    expect_cov = torch.zeros(SHAPE, dtype=torch.bool)
    expect_cov[:, 5:8, :] = True
    assert torch.equal(covered, expect_cov)
    assert torch.equal(stacked[covered], vol[0].as_tensor()[covered])
    assert bool((stacked[~covered] == 0).all())


def test_slice_layout_and_affine_without_transposes():
    vol = _volume(2)
    slices = Slices25D(selection="mask", axes=(0, 1, 2))(vol)
    by = {(s.meta["axis"], s.meta["index"]): s for s in slices}
    v = vol[0].as_tensor()
    assert by[(0, 4)].shape == (1, 14, 10) and torch.equal(by[(0, 4)][0].as_tensor(), v[4, :, :])
    assert by[(1, 5)].shape == (1, 12, 10) and torch.equal(by[(1, 5)][0].as_tensor(), v[:, 5, :])
    assert by[(2, 3)].shape == (1, 12, 14) and torch.equal(by[(2, 3)][0].as_tensor(), v[:, :, 3])
    # slice voxel (h, w, 0) lands on the world point of its source voxel
    for (axis, index), s in [((0, 4), by[(0, 4)]), ((1, 5), by[(1, 5)]), ((2, 3), by[(2, 3)])]:
        h, w = 3, 7
        src = [h, w]
        src.insert(axis, index)
        world_src = nib.affines.apply_affine(AFFINE, src)
        world_slice = nib.affines.apply_affine(np.asarray(s.affine), [h, w, 0])
        np.testing.assert_allclose(world_slice, world_src, atol=1e-9)
        np.testing.assert_allclose(slice_affine(AFFINE, axis, index), np.asarray(s.affine))


def test_centre_selection_follows_mask_box_and_clips():
    mask = _box_mask(lo=(2, 3, 1), hi=(7, 11, 8))  # box centre along axis 0 = 4.5
    assert slice_indices(SHAPE, mask, 0, "centre", k=4) == [3, 4, 5, 6]
    assert slice_indices(SHAPE, None, 0, "centre", k=4) == [4, 5, 6, 7]  # volume centre 5.5
    assert slice_indices(SHAPE, mask, 0, "centre", k=3, stride=2) == [2, 4, 6]
    edge = _box_mask(lo=(0, 3, 1), hi=(1, 11, 8))  # centre 0.5: clipped to the volume
    assert slice_indices(SHAPE, edge, 0, "centre", k=4) == [0, 1, 2, 3]
    assert slice_indices(SHAPE, mask, 2, "centre", k=16) == list(range(10))  # k > size: all


def test_trained_slices_are_what_the_slicer_takes_per_axis():
    mask = _box_mask(lo=(2, 3, 1), hi=(7, 11, 8))
    fa = MetaTensor(torch.rand((1, *SHAPE)) * mask)
    trained = trained_slices(SHAPE, mask, "centre", 4)
    assert trained[0] == [3, 4, 5, 6] and set(trained) == {0, 1, 2}
    taken = {}
    for item in Slices25Dd("image", "mask", "centre", 4)({"image": fa, "mask": mask}):
        taken.setdefault(item["axis"], []).append(item["index"])
    assert trained == {a: sorted(v) for a, v in taken.items()}
    assert trained_slices(SHAPE, mask, "mask", axes=(2,)) == {2: slice_indices(SHAPE, mask, 2, "mask")}


def test_mask_selection_min_fraction_and_stride():
    mask = torch.zeros((1, *SHAPE))
    mask[0, 3:9, 2:12, 2:8] = 1  # full rows of 10x6 = 60 of 140 voxels per axis-0 slice
    mask[0, 10, 0, 0] = 1  # one lone voxel: "any brain voxel" keeps slice 10
    assert slice_indices(SHAPE, mask, 0, "mask") == [3, 4, 5, 6, 7, 8, 10]
    assert slice_indices(SHAPE, mask, 0, "mask", min_brain_fraction=0.4) == [3, 4, 5, 6, 7, 8]
    assert slice_indices(SHAPE, mask, 0, "mask", min_brain_fraction=0.5) == []
    assert slice_indices(SHAPE, mask, 0, "mask", stride=3) == [3, 6, 10]


def test_items_carry_metadata_mask_and_pass_through():
    vol = _volume(3)
    vol.meta["subject"] = "from-meta"
    mask = _box_mask()
    dwi = torch.zeros((5, *SHAPE))
    data = {
        "fa": vol,
        "mask": mask,
        "label": 1,
        "acquisition": "dir95_LR",
        "dwi": dwi,
        "path": "/x/fa.nii.gz",
    }
    items = Slices25Dd("fa", selection="centre", k=2)(data)
    assert len(items) == 6
    assert [(it["axis"], it["index"]) for it in items] == [(0, 5), (0, 6), (1, 6), (1, 7), (2, 4), (2, 5)]
    for it in items:
        assert it["label"] == 1 and it["path"] == "/x/fa.nii.gz"
        assert it["subject"] == "from-meta" and it["acquisition"] == "dir95_LR"
        assert "dwi" not in it and "fa" not in it  # volumes are not copied into every slice
        np.testing.assert_array_equal(it["source_affine"], AFFINE)
        assert it["source_shape"] == SHAPE
        assert it["image"].dtype == torch.float32 and it["image"].shape[0] == 1
        assert it["mask"].shape == it["image"].shape
        ref = mask[0].select(it["axis"], it["index"])
        assert torch.equal(it["mask"][0].as_tensor(), ref)


def test_missing_keys_and_invalid_inputs():
    vol = _volume()
    assert Slices25Dd("md", allow_missing_keys=True)({"fa": vol}) == [{"fa": vol}]
    with pytest.raises(KeyError, match="md"):
        Slices25Dd("md")({"fa": vol})
    with pytest.raises(ValueError, match="selection"):
        Slices25Dd("fa", selection="all")
    with pytest.raises(ValueError, match="mask 'mask' shape"):
        Slices25Dd("fa")({"fa": vol, "mask": torch.ones(1, 12, 14, 9)})
    with pytest.raises(ValueError, match=r"\(C, X, Y, Z\)"):
        Slices25D()(torch.rand(12, 14, 10))
    with pytest.raises(ValueError, match="does not fit a slice"):
        stack_slices([torch.zeros(1, 14, 9)], 0, [0], SHAPE)
    with pytest.raises(ValueError, match="out of range"):
        stack_slices([torch.zeros(14, 10)], 0, [12], SHAPE)
    with pytest.raises(ValueError, match="2 maps for 1 indices"):
        stack_slices([torch.zeros(14, 10)] * 2, 0, [1], SHAPE)
