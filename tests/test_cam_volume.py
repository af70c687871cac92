"""CAM back in the FA voxel grid (cam_volume), min-max scaling and the NIfTI writer."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn
from monai.data import MetaTensor

from hcp_cam.cam.inferer import CAMInferer
from hcp_cam.cam.nifti import normalise01, write_cam_nifti
from hcp_cam.cam.volume import cam_volume
from hcp_cam.errors import InputError
from hcp_cam.io import load_nifti
from hcp_cam.transforms.augment import build_slice_transforms

SHAPE = (12, 14, 10)
PEAK = (6, 8, 4)
S = 24


class IdentityCAMNet(nn.Module):
    """A GAP network whose CAM for class 1 is its input: features = 1x1 conv with weight 1.

    With classifier rows w_0 = -1, w_1 = +1, the class-1 map is the (normalised) slice itself and
    the class-0 map its negative, so the expected CAM is known without any training.
    """

    def __init__(self, spatial_dims: int = 2, bias: tuple[float, float] = (0.0, 0.0)) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        pool = nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d
        self.features = conv(1, 1, 1)
        self.pool = pool(1)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(1, 2)
        with torch.no_grad():
            self.features.weight.fill_(1.0)
            self.features.bias.zero_()
            self.classifier.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.classifier.bias.copy_(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x)).flatten(1)))


def _brain() -> torch.Tensor:
    m = torch.zeros((1, *SHAPE))
    m[0, 1:11, 1:13, 1:9] = 1
    return m


def _fa(affine: np.ndarray | None = None, seed: int = 0) -> MetaTensor:
    """FA-like values 0.2..0.4 in the brain, one bright voxel at PEAK."""
    g = torch.Generator().manual_seed(seed)
    fa = (0.2 + 0.2 * torch.rand((1, *SHAPE), generator=g)) * _brain()
    fa[(0, *PEAK)] = 0.9
    return MetaTensor(fa, affine=torch.as_tensor(np.eye(4) if affine is None else affine))


def _argmax3(v: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(v.argmax()), v.shape))


def test_peak_lands_on_the_planted_voxel_2d():
    _, evaluate = build_slice_transforms(S)
    net = IdentityCAMNet()
    net.train()
    res = cam_volume(_fa(), _brain(), net, CAMInferer("cam"), evaluate, class_idx=1, batch_size=7)
    assert net.training  # mode restored
    assert res.fused.shape == SHAPE and res.fused.dtype == torch.float32
    assert _argmax3(res.fused) == PEAK
    for axis in (0, 1, 2):
        assert _argmax3(res.per_axis[axis]) == PEAK
        assert bool(res.covered[axis][_brain()[0].bool()].all())  # "mask" selection: every brain slice
    assert bool((res.fused[_brain()[0] == 0] == 0).all())  # zero outside the brain
    assert res.class_idx == 1 and res.logits_mean.shape == (2,)
    # mean fusion: the average of the axes that cover a voxel
    torch.testing.assert_close(res.fused[PEAK], sum(res.per_axis[a][PEAK] for a in range(3)) / 3)
    # the class-0 map is the negative one: its peak is elsewhere
    res0 = cam_volume(_fa(), _brain(), net, CAMInferer("cam"), evaluate, class_idx=0)
    torch.testing.assert_close(res0.fused, -res.fused, atol=1e-5, rtol=0)


def test_predicted_class_is_one_class_for_the_volume_and_max_fusion():
    _, evaluate = build_slice_transforms(S)
    net = IdentityCAMNet(bias=(0.0, 2.0))  # class 1 wins on every slice
    res = cam_volume(_fa(), _brain(), net, CAMInferer("cam"), evaluate, fuse="max")
    assert res.class_idx == 1
    assert float(res.logits_mean[1] - res.logits_mean[0]) == pytest.approx(
        2.0, abs=0.05
    )  # GAP of a z-scored slice ~ 0
    stacked = torch.stack([res.per_axis[a] for a in range(3)])
    torch.testing.assert_close(res.fused, stacked.amax(0))
    assert _argmax3(res.fused) == PEAK


TRAINED = {0: [4, 5, 6, 7, 8], 1: [6, 7, 8, 9, 10], 2: [2, 3, 4, 5, 6]}


def test_slices_outside_the_trained_range_are_unknown():
    fa = _fa()
    fa[0, 1, 2, 1] = 3.0  # a bright rim voxel on peripheral slices that no trained range holds
    _, evaluate = build_slice_transforms(S)
    net, inferer = IdentityCAMNet(), CAMInferer("cam")
    every = cam_volume(fa, _brain(), net, inferer, evaluate, class_idx=1)
    assert _argmax3(every.fused) == (1, 2, 1)  # the rim outshines the effect
    res = cam_volume(
        fa, _brain(), net, inferer, evaluate, class_idx=1, trained_indices=TRAINED, coverage="any"
    )
    assert _argmax3(res.fused) == PEAK
    assert not bool(res.known[1, 2, 1]) and float(res.fused[1, 2, 1]) == 0.0
    for axis, idx in TRAINED.items():
        on = torch.zeros(SHAPE[axis], dtype=torch.bool)
        on[idx] = True
        other = [a for a in range(3) if a != axis]
        assert torch.equal(res.covered[axis].any(dim=tuple(other)), on)
    union = res.covered[0] | res.covered[1] | res.covered[2]
    assert torch.equal(res.known, union & _brain()[0].bool())
    assert bool((res.fused[~res.known] == 0).all())
    # a voxel seen by axis 0 only takes that axis' value, not an average with unknown zeros
    v = (5, 2, 1)
    assert bool(res.covered[0][v]) and not bool(res.covered[1][v]) and not bool(res.covered[2][v])
    assert float(res.fused[v]) == pytest.approx(float(res.per_axis[0][v]))


def test_coverage_all_keeps_the_block_every_axis_saw():
    """A voxel on one slab only, bright on that axis' slice, wins the peak with coverage "any"
    (the mean of one map) and is unknown with the default "all"."""
    fa = _fa()
    single = (5, 2, 1)  # on trained slice 5 of axis 0 only
    fa[(0, *single)] = 1.5
    _, evaluate = build_slice_transforms(S)
    net, inferer = IdentityCAMNet(), CAMInferer("cam")
    anyc = cam_volume(
        fa, _brain(), net, inferer, evaluate, class_idx=1, trained_indices=TRAINED, coverage="any"
    )
    assert _argmax3(anyc.fused) == single
    res = cam_volume(fa, _brain(), net, inferer, evaluate, class_idx=1, trained_indices=TRAINED)
    assert _argmax3(res.fused) == PEAK
    block = res.covered[0] & res.covered[1] & res.covered[2] & _brain()[0].bool()
    assert torch.equal(res.known, block)
    assert int(block.sum()) == 5 * 5 * 5
    assert bool((res.fused[~block] == 0).all())
    # inside the block the fused map is the mean of the three axes, as with "any"
    torch.testing.assert_close(res.fused[block], anyc.fused[block])
    torch.testing.assert_close(res.fused[PEAK], sum(res.per_axis[a][PEAK] for a in range(3)) / 3)
    # per-axis maps keep each slab whole
    assert bool(res.covered[0][single]) and float(res.per_axis[0][single]) > float(res.per_axis[0][PEAK])


def test_coverage_counts_only_the_axes_that_computed_slices():
    _, evaluate = build_slice_transforms(S)
    res = cam_volume(
        _fa(), _brain(), IdentityCAMNet(), CAMInferer("cam"), evaluate, class_idx=1, axes=(0, 1),
        trained_indices={0: TRAINED[0], 1: TRAINED[1]},
    )  # fmt: skip
    assert torch.equal(res.known, res.covered[0] & res.covered[1] & _brain()[0].bool())
    assert _argmax3(res.fused) == PEAK
    with pytest.raises(ValueError, match="coverage must be one of"):
        cam_volume(_fa(), _brain(), IdentityCAMNet(), CAMInferer("cam"), evaluate, coverage="some")


def test_3d_network_gives_the_volume_directly():
    _, evaluate = build_slice_transforms(16)  # the eval chain resizes the volume's longest side to 16
    net = IdentityCAMNet(spatial_dims=3)
    res = cam_volume(_fa(), _brain(), net, CAMInferer("cam"), evaluate, class_idx=1)
    assert res.fused.shape == SHAPE and res.per_axis == {}
    assert _argmax3(res.fused) == PEAK


def test_bad_masks_raise_input_error():
    _, evaluate = build_slice_transforms(S)
    net, inferer = IdentityCAMNet(), CAMInferer("cam")
    fa = _fa()
    fa.meta["filename_or_obj"] = "/data/sub-01_fa.nii.gz"
    with pytest.raises(InputError, match=r"sub-01_fa.*mask grid \(12, 14, 9\) differs"):
        cam_volume(fa, torch.ones((1, 12, 14, 9)), net, inferer, evaluate)
    with pytest.raises(InputError, match="mask affine differs"):
        cam_volume(
            fa, MetaTensor(_brain(), affine=torch.diag(torch.tensor([2.0, 2, 2, 1]))), net, inferer, evaluate
        )
    with pytest.raises(InputError, match="empty"):
        cam_volume(fa, torch.zeros((1, *SHAPE)), net, inferer, evaluate)
    with pytest.raises(ValueError, match="fuse"):
        cam_volume(fa, _brain(), net, inferer, evaluate, fuse="median")


def test_normalise01_over_the_brain():
    v = torch.arange(np.prod(SHAPE), dtype=torch.float32).reshape(SHAPE) - 100.0
    brain = _brain()[0]
    n = normalise01(v, brain)
    assert float(n[brain > 0].min()) == 0.0 and float(n[brain > 0].max()) == 1.0
    assert bool((n[brain == 0] == 0).all())
    with pytest.warns(UserWarning, match="constant"):
        assert not normalise01(torch.ones(SHAPE), brain).any()


def _oblique_las() -> np.ndarray:
    c, s = np.cos(0.2), np.sin(0.2)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([-1.25, 1.25, 1.5])  # LAS: x flipped
    a[:3, 3] = [20.0, -35.0, 10.0]
    return a


def _sitk_affine_ras(path) -> np.ndarray:
    img = sitk.ReadImage(str(path))
    a = np.eye(4)
    a[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    a[:3, 3] = img.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ a  # LPS -> RAS


@pytest.mark.parametrize(
    "affine", [_oblique_las(), np.diag([-2.0, 2.0, 2.0, 1.0])], ids=["oblique-LAS", "LAS"]
)
def test_written_cam_keeps_the_fa_geometry(tmp_path, affine):
    fa = _fa(affine)
    fa_path = tmp_path / "fa.nii.gz"
    nib.save(nib.Nifti1Image(fa[0].numpy(), affine), str(fa_path))
    _, evaluate = build_slice_transforms(S)
    res = cam_volume(fa, _brain(), IdentityCAMNet(), CAMInferer("cam"), evaluate, class_idx=1)
    raw = write_cam_nifti(res.fused, fa_path, tmp_path / "cam_raw.nii.gz", class_name="old")
    norm = write_cam_nifti(
        normalise01(res.fused, _brain()), load_nifti(fa_path), tmp_path / "cam01.nii.gz", "normalised"
    )
    ref = nib.load(str(fa_path))
    for path, desc in ((raw, b"CAM raw, class old"), (norm, b"CAM [0,1] per volume")):
        img = nib.load(path)
        assert img.get_data_dtype() == np.float32 and img.shape == SHAPE
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-6)
        np.testing.assert_allclose(img.header.get_sform(), ref.header.get_sform(), atol=1e-6)
        np.testing.assert_allclose(img.header.get_qform(), ref.header.get_qform(), atol=1e-5)
        assert img.header["descrip"].item().rstrip(b"\0") == desc
        np.testing.assert_allclose(_sitk_affine_ras(path), ref.affine, atol=1e-4)
        arr = sitk.GetArrayFromImage(sitk.ReadImage(path)).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
        assert _argmax3(torch.as_tensor(arr)) == PEAK  # the peak voxel is the same for both readers
    np.testing.assert_array_equal(nib.load(raw).get_fdata(dtype=np.float32), res.fused.numpy())


def test_writer_errors_and_zero_warning(tmp_path):
    fa_path = tmp_path / "fa.nii"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), np.eye(4)), str(fa_path))
    with pytest.warns(UserWarning, match="all zero"):
        write_cam_nifti(torch.zeros(SHAPE), fa_path, tmp_path / "zero.nii.gz")
    assert (tmp_path / "zero.nii.gz").exists()
    with pytest.raises(InputError, match=r"fa.nii.*differs from the FA grid"):
        write_cam_nifti(torch.ones((12, 14, 9)), fa_path, tmp_path / "bad.nii.gz")
    with pytest.raises(ValueError, match="normalised"):
        write_cam_nifti(torch.full(SHAPE, 2.0), fa_path, tmp_path / "bad.nii.gz", kind="normalised")
    with pytest.raises(InputError, match="not found"):
        write_cam_nifti(torch.ones(SHAPE), tmp_path / "missing.nii.gz", tmp_path / "bad.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fa.nii", "zero.nii.gz"]  # nothing half-written
