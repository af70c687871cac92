"""Train/eval slice chains (build_slice_transforms) and mapping network-size maps back (map_to_slice)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from hcp_cam.transforms.augment import (
    DERIVED_MASK_KEY,
    build_slice_transforms,
    build_volume_transforms,
    map_to_slice,
)

S = 48


def _item(h: int, w: int, seed: int = 0) -> dict:
    """A slice item as Slices25Dd makes it: FA-like values in an elliptic brain, 0 outside."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    mask = ((yy**2 + xx**2) < 0.8).to(torch.float32)[None]
    img = (0.2 + 0.6 * torch.rand((1, h, w), generator=g)) * mask
    return {"image": MetaTensor(img), "mask": MetaTensor(mask), "label": 1, "axis": 2, "index": 3}


@pytest.mark.parametrize("hw", [(20, 30), (30, 20), (14, 10), (64, 50)])
def test_output_shapes_and_dtype(hw):
    train, evaluate = build_slice_transforms(S)
    for chain in (train, evaluate):
        out = chain(_item(*hw))
        for key in ("image", "mask"):
            assert out[key].shape == (1, S, S)
            assert out[key].dtype == torch.float32
        assert out["label"] == 1 and out["axis"] == 2  # other keys pass through
        assert set(torch.unique(out["mask"]).tolist()) <= {0.0, 1.0}  # nearest keeps the mask binary


def test_eval_normalises_brain_per_slice():
    item = _item(20, 30)
    shifted = dict(item, image=item["image"] * 3.0 + 0.0)  # a per-subject scale must not matter
    _, evaluate = build_slice_transforms(30)  # 30 = the longest side: no resize of the values
    a, b = evaluate(item)["image"], evaluate(shifted)["image"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    brain = evaluate(item)["mask"] > 0
    assert abs(float(a[brain].mean())) < 1e-5 and abs(float(a[brain].std(unbiased=False)) - 1) < 1e-4


def test_noise_only_inside_brain_background_exactly_zero():
    train, evaluate = build_slice_transforms(S, noise_prob=1.0, noise_std=0.3, erase_prob=0.0, flip_prob=0.5)
    train.set_random_state(seed=7)
    for seed in range(4):
        item = _item(20, 30, seed)
        out = train(item)
        background = out["mask"] == 0
        assert bool(background.any()) and bool((out["mask"] > 0).any())
        assert bool((out["image"][background] == 0).all()), "noise leaked into the background"
    # and noise was really added inside: a train output without translation/flip differs from eval
    still, evaluate = build_slice_transforms(
        S, noise_prob=1.0, erase_prob=0.0, flip_prob=0.0, crop_margin=0.0
    )
    still.set_random_state(seed=1)
    item = _item(20, 30)
    noisy, clean = still(item), evaluate(item)
    brain = clean["mask"] > 0
    diff = (noisy["image"] - clean["image"])[brain]
    assert 0.2 < float(diff.std()) < 0.4  # std 0.3 on normalised intensities
    assert torch.equal(noisy["mask"], clean["mask"])


def test_seeded_train_chain_is_reproducible():
    train, _ = build_slice_transforms(S)
    item = _item(20, 30)
    train.set_random_state(seed=11)
    first = [train(item)["image"] for _ in range(3)]
    train.set_random_state(seed=11)
    again = [train(item)["image"] for _ in range(3)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    train.set_random_state(seed=12)
    other = [train(item)["image"] for _ in range(3)]
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_without_mask_key_the_brain_comes_from_the_image():
    item = _item(20, 30)
    del item["mask"]
    train, evaluate = build_slice_transforms(S, mask_key=None, noise_prob=1.0, erase_prob=0.0)
    train.set_random_state(seed=0)
    out = train(item)
    assert DERIVED_MASK_KEY not in out and "mask" not in out
    ev = evaluate(item)
    assert bool((out["image"][ev["image"] == 0] == 0).mean(dtype=torch.float32) > 0.5)


def _footprint(i: int, j: int, h: int, w: int, size: int) -> tuple[slice, slice]:
    """Pixels of the network input covered by source pixel (i, j): resize by size/max(h, w), pad centred."""
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    ph, pw = (size - nh) // 2, (size - nw) // 2
    sh, sw = nh / h, nw / w
    rows = slice(ph + math.floor(i * sh), ph + math.ceil((i + 1) * sh))
    cols = slice(pw + math.floor(j * sw), pw + math.ceil((j + 1) * sw))
    return rows, cols


@pytest.mark.parametrize("hw", [(20, 30), (30, 20)])
def test_map_to_slice_planted_pixel_lands_on_its_source(hw):
    h, w = hw
    _, evaluate = build_slice_transforms(S)
    item = _item(h, w)
    out = evaluate(item)
    for i, j in [(0, 0), (h - 1, w - 1), (5, 17 % w), (h // 2, 3)]:
        planted = torch.zeros((1, S, S))
        rows, cols = _footprint(i, j, h, w, S)
        planted[0, rows, cols] = 1.0
        back = map_to_slice(planted, out, evaluate)
        assert back.shape == (1, h, w) and back.dtype == torch.float32
        peak = np.unravel_index(int(back[0].argmax()), (h, w))
        assert tuple(int(p) for p in peak) == (i, j)


def test_map_to_slice_identity_round_trip_and_many_maps():
    h, w = 20, 30
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    ramp = (1.0 + yy + 2.0 * xx)[None]  # nonzero everywhere: normalisation is one affine map
    item = {"image": MetaTensor(ramp), "mask": MetaTensor(torch.ones((1, h, w)))}
    _, evaluate = build_slice_transforms(96)
    out = evaluate(item)
    back = map_to_slice(out["image"], out, evaluate)
    expect = (ramp - ramp.mean()) / ramp.std(unbiased=False)
    # up- then down-sampling a linear ramp with bilinear interpolation: exact inside, border pixels blur
    torch.testing.assert_close(back[:, 1:-1, 1:-1], expect[:, 1:-1, 1:-1], atol=0.02, rtol=0)
    torch.testing.assert_close(back, expect, atol=0.1, rtol=0)
    two = map_to_slice(torch.stack([out["image"][0], -out["image"][0]]), out, evaluate)
    assert two.shape == (2, h, w)
    torch.testing.assert_close(two[1], -two[0])


def test_map_to_slice_rejects_untracked_items_and_wrong_sizes():
    _, evaluate = build_slice_transforms(S)
    out = evaluate(_item(20, 30))
    with pytest.raises(ValueError, match="applied operations"):
        map_to_slice(torch.zeros(1, S, S), {"image": out["image"].as_tensor()}, evaluate)
    with pytest.raises(ValueError, match="differs from the transformed image"):
        map_to_slice(torch.zeros(1, S, S + 1), out, evaluate)
    with pytest.raises(ValueError, match="flip_prob"):
        build_slice_transforms(S, flip_prob=1.5)


def test_chains_leave_the_input_item_untouched():
    item = _item(20, 30)
    before = item["image"].as_tensor().clone()
    train, evaluate = build_slice_transforms(S)
    evaluate(item)
    train(item)
    assert torch.equal(item["image"].as_tensor(), before)
    assert len(item["image"].applied_operations) == 0


def test_volume_chains_leave_the_input_untouched_and_give_cubes():
    """The 3D chain has the 2D chain's copy: ``NormalizeIntensityd(nonzero=True)`` would otherwise
    z-score the caller's float32 volume in place (the items of ``PreparedData`` and a dataset's cache)."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, 12, 16, 10)
    mask[:, 2:-2, 3:-3, 2:-2] = 1
    item = {"image": MetaTensor((0.2 + 0.6 * torch.rand((1, 12, 16, 10), generator=g)) * mask), "mask": mask}
    before = item["image"].as_tensor().clone()
    train, evaluate = build_volume_transforms(20, noise_prob=1.0)
    train.set_random_state(seed=0)
    for chain in (evaluate, train):
        out = chain(item)
        assert out["image"].shape == (1, 20, 20, 20) and out["image"].dtype == torch.float32
        assert bool((out["image"][out["mask"] == 0] == 0).all())
        assert torch.equal(item["image"].as_tensor(), before)
    _, same_size = build_volume_transforms(16)  # 16 = the longest side: no resampling of the values
    out = same_size(item)
    z = out["image"][out["mask"] > 0]
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std(unbiased=False)) - 1) < 1e-4
