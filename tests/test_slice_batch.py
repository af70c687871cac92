"""The batched slice eval chain equals the MONAI chain slice by slice, and so does the whole-brain CAM."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from hcp_cam.cam.inferer import CAMInferer
from hcp_cam.cam.volume import cam_volume
from hcp_cam.networks import get_network
from hcp_cam.transforms import (
    BatchedSliceEval,
    SliceEvalCompose,
    Slices25Dd,
    build_slice_transforms,
    map_to_slice,
    slice_indices,
    slice_stack,
    trained_slices,
)

# anisotropic grid, no two sides equal: every axis has its own (H, W) and resize factor
SHAPE = (23, 31, 17)


def _volume(seed: int = 0) -> tuple[MetaTensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    grids = torch.meshgrid(*[torch.linspace(-1.15, 1.15, n) for n in SHAPE], indexing="ij")
    mask = (sum(x**2 for x in grids) <= 1.0)[None].to(torch.uint8)
    fa = torch.rand((1, *SHAPE), generator=g) * mask
    fa = (fa + 0.3) * mask  # a per-subject offset: the z-score's mean matters
    return MetaTensor(fa, affine=torch.diag(torch.tensor([1.25, 1.25, 2.0, 1.0]))), mask


@pytest.mark.parametrize("size", [32, 15])  # up- and down-sampling, an odd size (uneven padding)
def test_batched_eval_and_inverse_equal_the_monai_chain_per_slice(size):
    fa, mask = _volume()
    _, chain = build_slice_transforms(image_size=size)
    assert isinstance(chain, SliceEvalCompose)
    items = Slices25Dd("image", "mask", "mask", axes=(0, 1, 2))({"image": fa, "mask": mask})
    g = torch.Generator().manual_seed(1)
    for axis in (0, 1, 2):
        its = [it for it in items if it["axis"] == axis]
        index = torch.tensor([it["index"] for it in its])
        images, masks = slice_stack(fa.as_tensor(), axis, index), slice_stack(mask, axis, index)
        # the stack is Slices25Dd's slices
        torch.testing.assert_close(
            images, torch.stack([it["image"].as_tensor() for it in its]), rtol=0, atol=0
        )
        done = [chain(it) for it in its]
        expected = torch.stack([d["image"].as_tensor() for d in done])
        got = chain.batched(images, masks)
        assert got.shape == (len(its), 1, size, size) and got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
        maps = torch.randn(len(its), 2, size, size, generator=g)
        back = chain.batched.invert(maps, images.shape[-2:])
        expected_back = torch.stack([map_to_slice(maps[i], done[i], chain) for i in range(len(its))])
        assert back.shape == (len(its), 2, *images.shape[-2:])
        torch.testing.assert_close(back, expected_back, rtol=0, atol=1e-6)


def test_slices_without_brain_or_spread_follow_monai():
    # (a constant slice of several pixels is left out: MONAI's float32 mean is off by one ulp there
    # and its SD of ~3e-8 turns the rounding into values of -1; both results are noise)
    _, chain = build_slice_transforms(image_size=12)
    images = torch.zeros(3, 1, 9, 7)
    images[1, 0, 2:6, 1:5] = torch.linspace(0.1, 0.7, 16).reshape(4, 4)
    images[2, 0, 3, 3] = -0.2  # one pixel: SD 0 -> divided by 1
    masks = (images != 0).to(torch.uint8)
    masks[0, 0, 4, 4] = 1  # brain but FA 0: no nonzero value, left as is
    expected = torch.stack(
        [chain({"image": images[i], "mask": masks[i]})["image"].as_tensor() for i in range(3)]
    )
    torch.testing.assert_close(chain.batched(images, masks), expected, rtol=0, atol=1e-6)


def test_other_key_layouts_keep_a_plain_compose_and_bad_stacks_are_refused():
    _, chain = build_slice_transforms(image_size=16, keys=("fa",), mask_key="brain")
    assert type(chain) is Compose
    _, chain = build_slice_transforms(image_size=16, mask_key=None)
    assert type(chain) is Compose
    batched = BatchedSliceEval(16)
    with pytest.raises(ValueError, match="masks"):
        batched(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="differ"):
        batched(torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="maps"):
        batched.invert(torch.zeros(2, 1, 8, 8), (8, 8))
    with pytest.raises(ValueError, match="image_mode"):
        BatchedSliceEval(16, image_mode="lanczos")


@pytest.mark.parametrize(
    ("method", "class_idx", "trained", "coverage"),
    [("cam", None, False, "all"), ("cam", 1, True, "any"), ("gradcam", None, True, "all")],
)
def test_whole_brain_cam_is_the_same_batched_or_slice_by_slice(method, class_idx, trained, coverage):
    fa, mask = _volume(seed=3)
    torch.manual_seed(0)
    net = get_network("alexnet", spatial_dims=2, width=0.0625).eval()
    size = net.min_input_size
    _, chain = build_slice_transforms(image_size=size)
    indices = trained_slices(SHAPE, mask[0].numpy() > 0, "centre", 4) if trained else None
    runs = [
        cam_volume(
            fa,
            mask,
            net,
            CAMInferer(method),
            chain,
            batch_size=5,
            class_idx=class_idx,
            trained_indices=indices,
            coverage=coverage,
            batched=batched,
        )  # fmt: skip
        for batched in (True, False)
    ]
    fast, slow = runs
    assert fast.class_idx == slow.class_idx
    torch.testing.assert_close(fast.logits_mean, slow.logits_mean, rtol=1e-4, atol=1e-5)
    assert torch.equal(fast.known, slow.known)
    scale = slow.fused.abs().max()
    assert scale > 0
    torch.testing.assert_close(fast.fused, slow.fused, rtol=0, atol=1e-4 * float(scale))
    for axis in (0, 1, 2):
        assert torch.equal(fast.covered[axis], slow.covered[axis])
        torch.testing.assert_close(fast.per_axis[axis], slow.per_axis[axis], rtol=0, atol=1e-4 * float(scale))
    if trained:  # only the trained slabs were computed
        assert int(fast.covered[0].any(dim=(1, 2)).sum()) == 4


def test_predicted_class_cam_takes_one_pass_over_the_slices():
    """CAM of the predicted class needs no forward pass of its own: one pass gives logits and every
    class's map. Grad-CAM still needs the class first, so it runs the network twice per batch."""
    fa, mask = _volume(seed=5)
    torch.manual_seed(0)
    net = get_network("alexnet", spatial_dims=2, width=0.0625).eval()
    _, chain = build_slice_transforms(image_size=net.min_input_size)
    calls = []
    net.features.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    slices = sum(len(slice_indices(SHAPE, mask[0], a, "mask")) for a in range(3))
    cam = cam_volume(fa, mask, net, CAMInferer("cam"), chain, batch_size=7)
    assert sum(calls) == slices
    calls.clear()
    grad = cam_volume(fa, mask, net, CAMInferer("gradcam"), chain, batch_size=7)
    assert sum(calls) == 2 * slices
    assert cam.class_idx == grad.class_idx == int(cam.logits_mean.argmax())
