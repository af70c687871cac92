"""The device-resident pipeline: slice cache, batched augmentation (against MONAI), batch loader, engines."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.transforms import Flip, Resize, SpatialCrop, SpatialPad

from hcp_cam.errors import ConfigError
from hcp_cam.training.device import (
    DeviceBatchLoader,
    RandSliceAugment,
    SetEpochHandler,
    SliceAugmentParams,
    SliceCache,
    crop_resize,
    select_loader,
)
from hcp_cam.training.run_setup import (
    place_network,
    resolve_amp,
    resolve_channels_last,
    resolve_data_pipeline,
)
from hcp_cam.transforms import build_slice_transforms

S = 32


def _brains(n: int, size: int = S, seed: int = 0) -> torch.Tensor:
    """``(n, 1, size, size)`` z-scored-like slices in an off-centre elliptic brain, exactly 0 outside."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    brain = (((yy - 0.1) / 0.8) ** 2 + ((xx + 0.15) / 0.6) ** 2 < 1).to(torch.float32)
    return (torch.randn((n, 1, size, size), generator=g) + 0.5) * brain


def _tolerance(x: torch.Tensor) -> float:
    """float32 rounding of grid_sample's sampling positions: ((u + 1) * W - 1) / 2 with |u| <= 1 is off by
    at most a few W * 2^-24 pixels, which moves a bilinear value by that times a neighbour difference
    (<= 2 max|x|); 8 * W * 2^-24 * max|x| bounds it with room (2e-6 seen at W = 40)."""
    return 8 * x.shape[-1] * 2.0**-24 * float(x.abs().max())


def _none(b: int, **kw) -> SliceAugmentParams:
    base = dict(
        boxes=None,
        flip=torch.zeros(b, dtype=torch.bool),
        noise=None,
        erase=None,
        erase_on=torch.zeros(b, dtype=torch.bool),
    )
    return SliceAugmentParams(**{**base, **kw})


# ---------------------------------------------------------------- batched augmentation vs MONAI


@pytest.mark.parametrize("box", [(3, 5, 20, 25), (0, 0, S, S), (10, 2, 13, 27), (5, 5, 7, 9), (2, 1, 30, 31)])
def test_crop_resize_matches_monai_spatial_crop_and_resize(box):
    x = _brains(2, seed=1)
    y0, x0, h, w = box
    boxes = torch.tensor([box, box], dtype=torch.float32)
    out = crop_resize(x, boxes, (S, S))
    for i in range(2):
        cropped = SpatialCrop(roi_start=(y0, x0), roi_end=(y0 + h, x0 + w))(x[i])
        ref = Resize((S, S), mode="bilinear", align_corners=False, anti_aliasing=False)(cropped)
        torch.testing.assert_close(out[i], torch.as_tensor(ref), atol=_tolerance(x), rtol=0)


def test_crop_resize_of_a_translated_box_is_monai_pad_then_crop():
    """crop_margin's meaning: SpatialPad to P then a crop of S at an integer start = a box of side S
    shifted by start - (P - S) // 2, reading zeros outside the image."""
    x = _brains(1, seed=2)
    padded = SpatialPad((S + 5, S + 5))(x[0])
    for start in [(0, 0), (5, 5), (1, 4), (3, 0)]:
        ref = SpatialCrop(roi_start=start, roi_end=(start[0] + S, start[1] + S))(padded)
        box = torch.tensor([[start[0] - 2, start[1] - 2, S, S]], dtype=torch.float32)
        torch.testing.assert_close(crop_resize(x, box)[0], torch.as_tensor(ref), atol=_tolerance(x), rtol=0)


@pytest.mark.parametrize("flip_axis", [0, 1])
def test_forced_flip_equals_monai_flip_with_and_without_crop(flip_axis):
    x = _brains(3, seed=3)
    aug = RandSliceAugment(flip_axis=flip_axis, crop_margin=0.0)
    flip = torch.tensor([True, False, True])
    out = aug.apply(x, _none(3, flip=flip))
    identity_boxes = torch.tensor([[0.0, 0.0, S, S]] * 3)
    via_grid = aug.apply(x, _none(3, flip=flip, boxes=identity_boxes))  # the flip folded into the crop
    for i in range(3):
        ref = Flip(spatial_axis=flip_axis)(x[i]) if flip[i] else x[i]
        assert torch.equal(out[i], torch.as_tensor(ref))
        torch.testing.assert_close(via_grid[i], torch.as_tensor(ref), atol=_tolerance(x), rtol=0)


def test_noise_only_inside_the_brain_and_erasing_sets_its_box_to_zero():
    x = _brains(8, seed=4)
    background = x == 0
    aug = RandSliceAugment(noise_prob=1.0, noise_std=0.3, flip_prob=0.0, crop_margin=0.0, erase_prob=0.0)
    out = aug.set_random_state(0)(x)
    assert bool((out[background] == 0).all()), "noise leaked into the background"
    inside = out[~background] - x[~background]
    assert float(inside.std()) == pytest.approx(0.3, rel=0.1)
    erase = torch.tensor([[2, 3, 5, 7]] * 8)
    params = _none(8, erase=erase, erase_on=torch.tensor([True] * 4 + [False] * 4))
    erased = RandSliceAugment(crop_margin=0.0).apply(x, params)
    assert bool((erased[:4, :, 2:7, 3:10] == 0).all())
    assert torch.equal(erased[4:], x[4:])
    keep = torch.ones_like(x, dtype=torch.bool)
    keep[:4, :, 2:7, 3:10] = False
    assert torch.equal(erased[keep], x[keep])


def test_per_sample_parameters_differ_across_the_batch():
    aug = RandSliceAugment().set_random_state(1)
    p = aug.randomize((64, 1, S, S), "cpu")
    assert 10 < int(p.flip.sum()) < 54  # flip_prob 0.5: some flipped, some not
    assert 10 < int(p.erase_on.sum()) < 54
    assert len(torch.unique(p.boxes[:, :2], dim=0)) > 10  # many different translations
    assert float(p.boxes[:, :2].min()) >= -2 and float(p.boxes[:, :2].max()) <= 2  # crop_margin 0.125 of 32
    assert torch.equal(p.boxes[:, 2:], torch.full((64, 2), float(S)))  # crop_scale (1, 1): no resize
    noisy = p.noise.flatten(1).std(dim=1) > 0
    assert 10 < int(noisy.sum()) < 54
    side = p.erase[:, 2:]
    assert int(side.min()) >= round(0.1 * S) and int(side.max()) <= round(0.33 * S)
    assert len(torch.unique(side, dim=0)) > 5
    # the same slice 64 times: the outputs differ
    x = _brains(1).expand(64, -1, -1, -1)
    out = aug(x)
    assert len(torch.unique(out.flatten(1), dim=0)) > 50


def test_scaled_crops_resize_and_keep_the_aspect():
    aug = RandSliceAugment(crop_scale=(0.8, 1.1)).set_random_state(2)
    p = aug.randomize((32, 1, S, S), "cpu")
    assert torch.equal(p.boxes[:, 2], p.boxes[:, 3])
    assert float(p.boxes[:, 2].min()) >= 0.8 * S and float(p.boxes[:, 2].max()) <= 1.1 * S
    assert aug(_brains(32)).shape == (32, 1, S, S)


def test_seeded_augmentation_is_reproducible():
    x = _brains(16, seed=5)
    a = RandSliceAugment().set_random_state(7)(x)
    b = RandSliceAugment().set_random_state(7)(x)
    c = RandSliceAugment().set_random_state(8)(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = torch.Generator().manual_seed(3)
    d = RandSliceAugment()(x, generator=g)
    e = RandSliceAugment()(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(d, e)


def test_eval_mode_and_zero_probabilities_are_the_identity():
    x = _brains(6, seed=6)
    aug = RandSliceAugment().eval()
    assert aug(x) is x
    off = RandSliceAugment(flip_prob=0.0, noise_prob=0.0, crop_margin=0.0, erase_prob=0.0)
    assert torch.equal(off(x), x)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="flip_prob"):
        RandSliceAugment(flip_prob=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        RandSliceAugment(crop_scale=(0.5, 1.5), crop_margin=0.125)
    with pytest.raises(ValueError, match="flip_axis"):
        RandSliceAugment(flip_axis=2)
    with pytest.raises(ValueError, match="unknown preprocessing setting"):
        RandSliceAugment(flip_probability=0.5)


# ---------------------------------------------------------------- slice cache


def _items(n_subjects: int = 3, per_subject: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for s in range(n_subjects):
        for k in range(per_subject):
            h, w = (20, 26) if k % 2 else (26, 22)  # axes of different shapes, as Slices25Dd gives
            mask = torch.zeros(1, h, w)
            mask[:, 3:-3, 4:-4] = 1
            img = (0.2 + 0.6 * torch.rand((1, h, w), generator=g)) * mask
            items.append(
                {
                    "image": MetaTensor(img),
                    "mask": MetaTensor(mask),
                    "label": s % 2,
                    "subject": f"sub{s}",
                    "acquisition": "dir95",
                    "axis": k % 3,
                    "index": k,
                }
            )
    return items


def test_slice_cache_holds_the_eval_chain_of_every_item():
    items = _items()
    _, evaluate = build_slice_transforms(S)
    cache = SliceCache.from_items(items, evaluate, device="cpu")
    assert cache.images.shape == (len(items), 1, S, S) and cache.images.dtype == torch.float32
    for i, item in enumerate(items):
        assert torch.equal(cache.images[i], torch.as_tensor(evaluate(dict(item))["image"]))
    assert cache.labels.tolist() == [it["label"] for it in items]
    assert cache.subjects == [it["subject"] for it in items]
    assert cache.axes.tolist() == [it["axis"] for it in items]
    assert cache.indices.tolist() == [it["index"] for it in items]
    assert isinstance(items[0]["image"], MetaTensor) and items[0]["image"].shape == (1, 26, 22)  # untouched


def test_slice_cache_refuses_empty_splits_and_mixed_sizes():
    with pytest.raises(ConfigError, match="no slices"):
        SliceCache.from_items([], lambda d: d)
    items = _items(1, 2)
    with pytest.raises(ConfigError, match="sub0.*one size"):
        SliceCache.from_items(items, lambda d: d)  # no resize: (1, 26, 22) then (1, 20, 26)


# ---------------------------------------------------------------- batch loader


def _cache(n: int = 20) -> SliceCache:
    return SliceCache(
        images=torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous() + 1,
        labels=torch.arange(n) % 2,
        subjects=[f"s{i}" for i in range(n)],
        acquisitions=["a"] * n,
        axes=torch.zeros(n, dtype=torch.long),
        indices=torch.arange(n),
    )


def _ids(loader) -> list[int]:
    return [int(i) for batch in loader for i in batch["index"]]


def test_loader_shuffles_per_epoch_from_its_seed_and_covers_every_slice():
    loader = DeviceBatchLoader(_cache(), batch_size=6, shuffle=True, seed=3)
    assert len(loader) == 4  # 20 slices: 6, 6, 6, 2
    first = _ids(loader)
    assert sorted(first) == list(range(20)) and first == _ids(loader)
    loader.set_epoch(1)
    second = _ids(loader)
    assert sorted(second) == list(range(20)) and second != first
    assert _ids(DeviceBatchLoader(_cache(), 6, shuffle=True, seed=3)) == first
    assert _ids(DeviceBatchLoader(_cache(), 6, shuffle=True, seed=4)) != first
    dropped = DeviceBatchLoader(_cache(), batch_size=6, shuffle=True, drop_last=True, seed=3)
    assert len(dropped) == 3 and _ids(dropped) == first[:18]
    batch = next(iter(dropped))
    assert batch["image"].shape == (6, 1, 4, 4) and batch["label"].dtype == torch.long
    assert batch["subject"] == [f"s{i}" for i in first[:6]]
    assert torch.equal(batch["image"][:, 0, 0, 0].long() - 1, torch.tensor(first[:6]))


@pytest.mark.parametrize("n", [20, 21])
def test_ranks_see_disjoint_slices_that_cover_the_split(n):
    loaders = [DeviceBatchLoader(_cache(n), 4, shuffle=True, seed=0, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        for ld in loaders:
            ld.set_epoch(epoch)
        a, b = (_ids(ld) for ld in loaders)
        assert len(a) == len(b) == (n + 1) // 2
        assert set(a) | set(b) == set(range(n))
        # DistributedSampler(even_divisible=True) repeats one slice when the split is odd
        assert len(set(a) & set(b)) == (n % 2)
    last = _ids(loaders[0])  # epoch 1
    loaders[0].set_epoch(0)
    assert _ids(loaders[0]) != last
    with pytest.raises(ConfigError, match="rank 2"):
        DeviceBatchLoader(_cache(), 4, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="no batch"):
        DeviceBatchLoader(_cache(3), 4, drop_last=True)


def test_augmented_epochs_are_reproducible_and_channels_last():
    cache = SliceCache(
        images=_brains(12, seed=9),
        labels=torch.zeros(12, dtype=torch.long),
        subjects=["s"] * 12,
        acquisitions=["a"] * 12,
        axes=torch.zeros(12, dtype=torch.long),
        indices=torch.arange(12),
    )

    def epoch(e: int) -> torch.Tensor:
        ld = DeviceBatchLoader(cache, 4, shuffle=True, augment=RandSliceAugment(), seed=1, channels_last=True)
        ld.set_epoch(e)
        return torch.cat([b["image"] for b in ld])

    a, b, c = epoch(2), epoch(2), epoch(3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(a, cache.images)  # augmented: the cache itself is untouched below
    assert torch.equal(cache.images, _brains(12, seed=9))


def test_supervised_trainer_consumes_the_loader_and_sets_its_epoch():
    cache = SliceCache.from_items(_items(4, 6), build_slice_transforms(S)[1])
    loader = DeviceBatchLoader(cache, 8, shuffle=True, drop_last=True, augment=RandSliceAugment(), seed=0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )
    seen: dict[int, list[int]] = {}
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=torch.nn.CrossEntropyLoss(),
        train_handlers=[SetEpochHandler(loader)],
    )

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        seen.setdefault(engine.state.epoch, []).extend(
            int(r["index"]) + 100 * int(r["subject"][3:]) for r in engine.state.batch
        )

    trainer.run()
    assert trainer.state.iteration == 2 * len(loader) == 2 * 3
    assert loader.epoch == 2
    assert seen[1] != seen[2] and len(seen[1]) == len(seen[2]) == 24
    assert torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))


def test_select_loader_and_set_epoch_handler_on_monai_loaders():
    assert select_loader("device", monai=None, device="L") == "L"
    with pytest.raises(ConfigError, match="disabled"):
        select_loader("monai", monai=None, device="L")
    with pytest.raises(ConfigError, match="expected one of"):
        select_loader("gpu", monai=None, device="L")


# ---------------------------------------------------------------- run settings


def test_auto_settings_follow_the_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_data_pipeline("auto", cpu) == "monai" and resolve_data_pipeline("auto", cuda) == "device"
    assert resolve_data_pipeline("auto", cuda, spatial_dims=3) == "monai"
    assert (
        resolve_data_pipeline("Device", cpu) == "device" and resolve_data_pipeline("monai", cuda) == "monai"
    )
    with pytest.raises(ConfigError, match="spatial_dims 3"):
        resolve_data_pipeline("device", cpu, spatial_dims=3)
    with pytest.raises(ConfigError, match="data_pipeline must be"):
        resolve_data_pipeline("dali", cpu)
    assert resolve_amp("auto", cuda) is True and resolve_amp("auto", cpu) is False
    assert resolve_amp("true", cuda) is True and resolve_amp("false", cuda) is False
    assert resolve_amp(True, cpu) is False  # MONAI's engines autocast CUDA only
    assert resolve_channels_last("auto", cuda) is True and resolve_channels_last("auto", cpu) is False
    assert resolve_channels_last("auto", cuda, spatial_dims=3) is False
    assert resolve_channels_last("true", cpu) is True
    with pytest.raises(ConfigError, match="channels_last"):
        resolve_channels_last("maybe", cpu)


def test_channels_last_network_saves_weights_that_load_into_a_plain_one():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    fast = place_network(net, "cpu", channels_last=True)
    assert fast[2].weight.is_contiguous(memory_format=torch.channels_last)
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    plain.load_state_dict(fast.state_dict())
    x = _brains(2)
    torch.testing.assert_close(plain(x), fast(x), atol=1e-5, rtol=1e-5)
