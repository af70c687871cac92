"""CAM figures: real PNGs, planes through the peak, the same picture for RAS and LAS storage."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread
from PIL import Image

from hcp_cam.cam.figures import (
    cohort_figure,
    network_comparison_figure,
    orthogonal_overlay,
    peak_planes,
    to_ras,
)
from hcp_cam.errors import InputError

SHAPE = (12, 14, 10)
PEAK = (8, 4, 6)
BOX = [[7, 3, 5], [9, 6, 7]]
RAS = np.array([[2.0, 0, 0, -12], [0, 2, 0, -14], [0, 0, 2.5, -10], [0, 0, 0, 1]])


def volumes():
    g = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]].astype(float)
    r = sum(((g[a] - (s - 1) / 2) / (s / 2)) ** 2 for a, s in enumerate(SHAPE))
    fa = np.where(r < 1, 0.3 + 0.4 * (g[0] / SHAPE[0]), 0.0)  # brighter to the right: a handedness cue
    cam = np.exp(-sum((g[a] - p) ** 2 for a, p in enumerate(PEAK)) / 3.0)
    return fa, cam


def to_las(vol, affine=RAS):
    """The same image stored left-to-right: flip x in the data and in the affine."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, SHAPE[0] - 1
    return vol[::-1].copy(), affine @ flip


def read_png(path, min_w=600, max_w=2000, min_h=250, max_h=1600):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    h, w = img.shape[:2]
    assert min_w <= w <= max_w and min_h <= h <= max_h, img.shape
    assert img[..., :3].std() > 0.05  # more than a blank page
    return img, Image.open(path).text


def test_peak_planes():
    _, cam = volumes()
    assert peak_planes(cam) == PEAK
    assert peak_planes(cam[None]) == PEAK  # channel-first (1, X, Y, Z)
    cam = cam.copy()
    cam[0, 0, 0] = np.nan  # unknown voxels are ignored
    cam[1, 2, 3] = 5.0
    assert peak_planes(cam) == (1, 2, 3)
    with pytest.raises(InputError, match="no finite value"):
        peak_planes(np.full(SHAPE, np.nan))
    with pytest.raises(InputError, match="3D"):
        peak_planes(np.zeros((4, 4)))


def test_to_ras_undoes_las_storage():
    _, cam = volumes()
    las, las_affine = to_las(cam)
    reorient, index, zooms = to_ras(las_affine, SHAPE)
    np.testing.assert_array_equal(reorient(las), cam)
    assert index(peak_planes(las)) == PEAK
    np.testing.assert_allclose(zooms, [2.0, 2.0, 2.5])


def test_orthogonal_overlay_png_through_peak(tmp_path):
    fa, cam = volumes()
    out = orthogonal_overlay(fa, cam, tmp_path / "figs" / "cam.png", box=BOX, title="s01", affine=RAS)
    assert out == tmp_path / "figs" / "cam.png"
    _, text = read_png(out)
    assert text["hcp_cam_planes"] == ",".join(map(str, peak_planes(cam))) == "8,4,6"
    assert [p.name for p in out.parent.iterdir()] == ["cam.png"]  # no temporary left


def test_las_input_looks_like_ras(tmp_path):
    fa, cam = volumes()
    ras_png = orthogonal_overlay(fa, cam, tmp_path / "ras.png", box=BOX, affine=RAS)
    fa_l, affine_l = to_las(fa)
    cam_l, _ = to_las(cam)
    box_l = [[SHAPE[0] - 1 - BOX[1][0], *BOX[0][1:]], [SHAPE[0] - 1 - BOX[0][0], *BOX[1][1:]]]
    las_png = orthogonal_overlay(fa_l, cam_l, tmp_path / "las.png", box=box_l, affine=affine_l)
    ras_img, _ = read_png(ras_png)
    las_img, text = read_png(las_png)
    assert text["hcp_cam_planes"] == f"{SHAPE[0] - 1 - PEAK[0]},{PEAK[1]},{PEAK[2]}"
    np.testing.assert_array_equal(las_img, ras_img)
    # and without the affine the LAS array is shown as stored, i.e. mirrored: a different picture
    raw_img, _ = read_png(orthogonal_overlay(fa_l, cam_l, tmp_path / "raw.png", box=box_l, affine=RAS))
    assert not np.array_equal(raw_img, ras_img)


def test_metatensor_affine_is_used(tmp_path):
    from monai.data import MetaTensor

    fa, cam = volumes()
    fa_l, affine_l = to_las(fa)
    cam_l, _ = to_las(cam)
    ras_img, _ = read_png(orthogonal_overlay(fa, cam, tmp_path / "ras.png", affine=RAS))
    meta = MetaTensor(np.ascontiguousarray(cam_l)[None], affine=affine_l)
    las_img, _ = read_png(orthogonal_overlay(fa_l, meta, tmp_path / "meta.png"))
    np.testing.assert_array_equal(las_img, ras_img)


def test_box_is_drawn_and_checked(tmp_path):
    fa, cam = volumes()
    with_box, _ = read_png(orthogonal_overlay(fa, cam, tmp_path / "a.png", box=BOX))
    flat_box = [*BOX[0], *BOX[1]]  # MONAI's xyzxyz form
    same, _ = read_png(orthogonal_overlay(fa, cam, tmp_path / "b.png", box=flat_box))
    without, _ = read_png(orthogonal_overlay(fa, cam, tmp_path / "c.png"))
    np.testing.assert_array_equal(with_box, same)
    assert not np.array_equal(with_box, without)
    with pytest.raises(InputError, match="outside the volume"):
        orthogonal_overlay(fa, cam, tmp_path / "d.png", box=[[0, 0, 0], [12, 3, 3]])
    with pytest.raises(InputError, match=r"background shape \(12, 14, 9\)"):
        orthogonal_overlay(fa[..., :9], cam, tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()


def test_network_comparison_figure(tmp_path):
    fa, cam = volumes()
    cams = {"alexnet": cam, "googlenet": np.roll(cam, -5, axis=0) * 3.0}
    img, text = read_png(network_comparison_figure(fa, cams, tmp_path / "nets.png", affine=RAS, box=BOX))
    assert text["hcp_cam_planes"] == "alexnet=8,4,6;googlenet=3,4,6"
    _, text = read_png(network_comparison_figure(fa, cams, tmp_path / "common.png", common_planes=True))
    assert text["hcp_cam_planes"] == "alexnet=8,4,6;googlenet=8,4,6"
    assert img.shape[0] > 600  # two rows
    with pytest.raises(InputError, match="'vgg16' has shape"):
        network_comparison_figure(fa, {"a": cam, "vgg16": cam[:-1]}, tmp_path / "bad.png")


def test_cohort_figure(tmp_path):
    fa, cam = volumes()
    groups = {"young": cam, "old": 0.5 * np.roll(cam, 2, axis=1)}
    img, text = read_png(cohort_figure(groups, fa, tmp_path / "cohort.png", affine=RAS))
    # common planes through the peak of the summed maps: y between the two peaks, nearer the stronger
    assert text["hcp_cam_planes"] == ",".join(map(str, peak_planes(groups["young"] + groups["old"])))
    _, text = read_png(cohort_figure(groups, fa, tmp_path / "fixed.png", planes=(2, 3, 4)))
    assert text["hcp_cam_planes"] == "2,3,4"
    with pytest.raises(InputError, match="not a voxel"):
        cohort_figure(groups, fa, tmp_path / "bad.png", planes=(12, 0, 0))
    with pytest.raises(InputError, match="no group"):
        cohort_figure({}, fa, tmp_path / "bad.png")


def test_plane_titles_give_world_mm_whatever_the_storage():
    """Panel titles name the plane by its world coordinate (what FSLeyes, ITK-SNAP and Slicer show),
    the same for RAS and LAS storage of one image; without an affine, by the voxel index."""
    from hcp_cam.cam.figures import _Display

    fa, _ = volumes()
    fa_l, affine_l = to_las(fa)
    ras = _Display(fa, RAS, None, SHAPE)
    las = _Display(fa_l, affine_l, None, SHAPE)
    peak_l = (SHAPE[0] - 1 - PEAK[0], PEAK[1], PEAK[2])
    expected = RAS @ np.r_[PEAK, 1.0]
    for axis in range(3):
        assert (
            ras.plane_text(PEAK, axis)
            == las.plane_text(peak_l, axis)
            == f"{'xyz'[axis]}={expected[axis]:.0f} mm"
        )
    assert _Display(fa, None, None, SHAPE).plane_text(PEAK, 0) == f"x={PEAK[0]}"
