"""Boxes of CAMs: planted blobs, the largest component, the threshold, empty maps, world corners."""

from __future__ import annotations

import itertools
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.affines import apply_affine, from_matvec

from hcp_cam.cam import (
    BoundingBox,
    EmptyCAMWarning,
    bounding_box,
    bounding_boxes,
    box_to_world,
    cam_segmentation,
)
from hcp_cam.errors import InputError
from hcp_cam.io import load_nifti


def _rotation(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


def test_planted_blob_2d():
    rng = np.random.default_rng(0)
    cam = rng.uniform(0.0, 0.15, (12, 14))  # background below 20% of the peak
    cam[3:7, 5:10] = rng.uniform(0.5, 1.0, (4, 5))
    box = bounding_box(cam)
    assert box == BoundingBox(2, (3, 5), (6, 9))
    assert box.shape == (4, 5) and box.n_voxels == 20
    assert cam[box.slices()].min() >= 0.5


def test_planted_blob_3d_and_torch_input():
    cam = torch.zeros(12, 14, 10)
    cam[2:5, 6:12, 3:9] = 2.0
    cam[3, 8, 5] = 5.0
    box = bounding_box(cam, fraction=0.2)
    assert (box.min_index, box.max_index) == ((2, 6, 3), (4, 11, 8))
    assert json.loads(json.dumps(box.to_dict())) == {
        "ndim": 3,
        "empty": False,
        "min_index": [2, 6, 3],
        "max_index": [4, 11, 8],
        "shape": [3, 6, 6],
    }


@pytest.mark.parametrize("shape", [(12, 14), (12, 14, 10)])
def test_two_blobs_keep_the_larger_not_the_peak(shape):
    cam = np.zeros(shape)
    small = (slice(1, 3), slice(1, 3)) + ((slice(1, 3),) if len(shape) == 3 else ())
    large = (slice(6, 11), slice(7, 13)) + ((slice(4, 9),) if len(shape) == 3 else ())
    cam[small] = 1.0  # the peak, in the small blob
    cam[large] = 0.4  # above 20% of the peak, larger
    seg = cam_segmentation(cam)
    assert seg.sum() == cam[large].size and seg[large].all()
    box = bounding_box(cam)
    assert box.min_index == tuple(s.start for s in large)
    assert box.max_index == tuple(s.stop - 1 for s in large)


@pytest.mark.parametrize(
    "fraction, lo, hi",
    [(0.05, 2, 9), (0.2, 3, 8), (0.25, 3, 8), (0.3, 4, 7), (0.5, 4, 7), (0.6, 5, 6), (1.0, 5, 6)],
)
def test_threshold_fraction_is_respected(fraction, lo, hi):
    cam = np.zeros((12, 12))
    for start, value in [(2, 0.1), (3, 0.25), (4, 0.5), (5, 1.0)]:  # nested squares
        cam[start : 12 - start, start : 12 - start] = value
    box = bounding_box(cam, fraction=fraction)
    assert box == BoundingBox(2, (lo, lo), (hi, hi))  # ">=": a value equal to the threshold is in


def test_connectivity_and_ties():
    cam = np.zeros((8, 8))
    cam[1:3, 1:3] = 1.0
    cam[3:5, 3:5] = 1.0  # touches the first square at a corner only
    cam[6, 0:2] = 1.0
    assert bounding_box(cam, fully_connected=True) == BoundingBox(2, (1, 1), (4, 4))
    # face connectivity: two 2x2 squares of equal size, the first in C order wins
    assert bounding_box(cam) == BoundingBox(2, (1, 1), (2, 2))


@pytest.mark.parametrize("fill", [0.0, -1.0])
def test_empty_or_negative_map_warns_and_gives_empty_box(fill):
    cam = np.full((6, 7, 5), fill)
    cam[2, 3, 1] = fill - 0.5
    with pytest.warns(EmptyCAMWarning, match="no positive value"):
        box = bounding_box(cam)
    assert box == BoundingBox.empty(3) and box.is_empty and box.n_voxels == 0
    assert box.to_dict() == {
        "ndim": 3,
        "empty": True,
        "min_index": None,
        "max_index": None,
        "shape": [0, 0, 0],
    }
    corners, lo, hi = box_to_world(box, np.eye(4))
    assert corners.shape == (8, 3) and np.isnan(corners).all() and np.isnan(lo).all() and np.isnan(hi).all()


def test_batch_of_slice_maps():
    maps = torch.zeros(2, 3, 10, 12)
    maps[0, 0, 1:4, 2:5] = 1.0
    maps[1, 2, 5:9, 0:3] = 3.0
    maps[0, 1] = -1.0
    with pytest.warns(EmptyCAMWarning):
        boxes = bounding_boxes(maps)
    assert [len(b) for b in boxes] == [3, 3]
    assert boxes[0][0] == BoundingBox(2, (1, 2), (3, 4))
    assert boxes[1][2] == BoundingBox(2, (5, 0), (8, 2))
    assert boxes[0][1].is_empty


@pytest.mark.parametrize(
    "cam, match",
    [
        (np.full((4, 4), np.nan), "NaN"),
        (np.ones((2, 1, 4, 4)), "bounding_boxes"),
        (np.ones(5), "2D slice or 3D volume"),
    ],
)
def test_invalid_maps(cam, match):
    with pytest.raises(InputError, match=match):
        bounding_box(cam)
    with pytest.raises(InputError, match="fraction"):
        bounding_box(np.ones((3, 3)), fraction=0.0)


@pytest.mark.parametrize("edges", [False, True])
def test_world_corners_through_las_oblique_affine(tmp_path, edges):
    affine = from_matvec(_rotation(0.2, 0.35) @ np.diag([-2.0, 2.5, 3.0]), [90.0, -120.0, -60.0])
    path = tmp_path / "cam.nii.gz"
    cam = np.zeros((12, 14, 10), dtype=np.float32)
    cam[3:7, 2:10, 4:6] = 1.0
    nib.save(nib.Nifti1Image(cam, affine), str(path))
    img = load_nifti(path, ndim=3)
    assert nib.aff2axcodes(img.affine)[0] == "L"
    box = bounding_box(img.get_fdata())
    assert box == BoundingBox(3, (3, 2, 4), (6, 9, 5))
    corners, lo, hi = box_to_world(box, img.affine, edges=edges)
    pad = 0.5 if edges else 0.0
    expected = [
        apply_affine(affine, [i, j, k])
        for i, j, k in itertools.product((3 - pad, 6 + pad), (2 - pad, 9 + pad), (4 - pad, 5 + pad))
    ]
    np.testing.assert_allclose(corners, np.array(expected), atol=1e-4)  # the NIfTI stores float32
    np.testing.assert_allclose(lo, np.min(expected, axis=0), atol=1e-4)
    np.testing.assert_allclose(hi, np.max(expected, axis=0), atol=1e-4)
    assert corners[0, 0] > corners[-1, 0]  # LAS: the index grows towards the left, x decreases
    with pytest.raises(InputError, match=r"\(4, 4\) affine"):
        box_to_world(box, np.eye(3))
