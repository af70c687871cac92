"""The device-resident training pipeline: every slice of a split on the device, augmented in batches there.

The bundle's ``"monai"`` pipeline runs the train chain of
:func:`hcp_cam.transforms.build_slice_transforms` on each slice in a ``DataLoader`` on the CPU, and
copies every batch to the device. On a GPU that chain, not the network, sets the pace (about 2 ms of
CPU per slice, see ``docs/performance.md``). The ``"device"`` pipeline does the same work in another
place:

1. :class:`SliceCache`: the deterministic part of the chain (copy, z-score of the brain voxels, resize
   of the longest side, zero pad, mask; the *eval* chain) runs once per slice, and all slices of a
   split become one ``(N, 1, S, S)`` float32 tensor on the target device, with their labels;
2. :class:`RandSliceAugment`: the random part (translation crop, flip, in-brain Gaussian noise,
   random erasing) runs on whole ``(B, C, S, S)`` batches on that device, one parameter draw per
   sample, with the parameters and defaults of the MONAI chain;
3. :class:`DeviceBatchLoader`: shuffles indices per epoch from a seed (``set_epoch`` as
   ``DistributedSampler``), shards them across DDP ranks, gathers batches from the cache and
   augments them; it yields the ``{"image", "label", ...}`` dicts MONAI's ``SupervisedTrainer`` and
   ``SupervisedEvaluator`` consume with their default ``prepare_batch``.

No host-device copy and no host-device synchronisation happens per batch: random draws use a
``torch.Generator`` on the device, and per-sample choices are ``torch.where`` masks, not Python
branches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from torch import nn
from torch.utils.data import DataLoader

from hcp_cam.errors import ConfigError

__all__ = [
    "SliceCache",
    "SliceAugmentParams",
    "RandSliceAugment",
    "crop_resize",
    "DeviceBatchLoader",
    "SetEpochHandler",
    "select_loader",
    "epoch_seed",
]

logger = logging.getLogger(__name__)


def _plain(x: Any) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.as_tensor() if isinstance(t, MetaTensor) else t


@dataclass
class SliceCache:
    """All slices of one split, after the deterministic transforms, held on one device.

    Attributes:
        images: ``(N, C, S, S)`` float tensor (the eval chain's output; 0 outside the brain).
        labels: ``(N,)`` int64 class indices, on the same device.
        subjects, acquisitions: ``N`` ids per slice (host lists; the subject-level metrics need them).
        axes, indices: ``(N,)`` int64 on the CPU: the slicing axis and the slice index in the volume.
    """

    images: torch.Tensor
    labels: torch.Tensor
    subjects: list[str]
    acquisitions: list[str]
    axes: torch.Tensor
    indices: torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        lengths = {
            len(self.labels),
            len(self.subjects),
            len(self.acquisitions),
            len(self.axes),
            len(self.indices),
        }
        if lengths != {n}:
            raise ValueError(f"{n} images but per-slice fields of lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    @classmethod
    def from_items(
        cls,
        items: Sequence[Mapping[str, Any]],
        transform: Callable[[dict], Mapping[str, Any]],
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        image_key: str = "image",
    ) -> SliceCache:
        """Run ``transform`` (the deterministic eval chain) on every item and stack the results.

        Args:
            items: slice dicts as :meth:`hcp_cam.training.data.PreparedData.items` makes them
                (``image`` ``(1, H, W)``, ``label``, ``subject``, ``acquisition``, ``axis``, ``index``).
            transform: maps one item to one item whose ``image`` is ``(C, S, S)`` (the same ``S`` for
                all), e.g. the eval chain of :func:`hcp_cam.training.data.build_transforms`.
            device: where the cache lives; the stacked tensor is copied there once.
            dtype: of the cached images.
            image_key: key of the image in the items.

        Returns:
            the cache, ``images`` ``(N, C, S, S)`` on ``device``.

        Raises:
            ConfigError: no items, an item without ``label``, or transformed images of different shapes.
        """
        if len(items) == 0:
            raise ConfigError("the split has no slices to cache: check the datalist and slices_per_axis")
        images: list[torch.Tensor] = []
        labels: list[int | float] = []
        subjects: list[str] = []
        acquisitions: list[str] = []
        axes: list[int] = []
        indices: list[int] = []
        for k, item in enumerate(items):
            if "label" not in item:
                raise ConfigError(f"slice item {k} (subject {item.get('subject', '?')!r}) has no 'label'")
            out = transform(dict(item))
            img = _plain(out[image_key]).to(dtype)
            if images and img.shape != images[0].shape:
                raise ConfigError(
                    f"slice item {k} (subject {item.get('subject', '?')!r}) transforms to shape "
                    f"{tuple(img.shape)}, the first to {tuple(images[0].shape)}: the transform must give one size"
                )
            images.append(img)
            # a class index, or a regression target (float: hcp_cam.training.tasks)
            labels.append(item["label"] if isinstance(item["label"], float) else int(item["label"]))
            subjects.append(str(item.get("subject", "")))
            acquisitions.append(str(item.get("acquisition", "")))
            axes.append(int(item.get("axis", -1)))
            indices.append(int(item.get("index", -1)))
        dev = torch.device(device)
        cache = cls(
            images=torch.stack(images).to(dev),
            labels=torch.as_tensor(
                labels, dtype=torch.float32 if isinstance(labels[0], float) else torch.long
            ).to(dev),
            subjects=subjects,
            acquisitions=acquisitions,
            axes=torch.as_tensor(axes, dtype=torch.long),
            indices=torch.as_tensor(indices, dtype=torch.long),
        )
        logger.info(
            "slice cache: %d slices of %s on %s (%.1f MiB)",
            len(cache),
            tuple(cache.images.shape[1:]),
            dev,
            cache.images.numel() * cache.images.element_size() / 2**20,
        )
        return cache


def crop_resize(
    x: torch.Tensor,
    boxes: torch.Tensor,
    size: Sequence[int] | None = None,
    clamp_to_box: bool = True,
    flip: torch.Tensor | None = None,
    flip_dim: int = -2,
) -> torch.Tensor:
    """Crop a box out of each image of a batch and resize it, bilinearly, in one ``grid_sample`` call.

    Sampling positions are those of ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` (and so of MONAI's ``Resize``) applied to the box: output pixel ``i``
    reads box coordinate ``(i + 0.5) * h / H_out - 0.5``. With ``clamp_to_box`` the positions are
    clamped to the box's first and last pixel centres, as ``interpolate`` clamps at the edges of its
    input, so the result equals ``SpatialCrop`` + ``Resize`` on each image up to float32 rounding of
    the sampling positions. Parts of a box outside the image read zeros (a crop of a zero-padded image).

    The boxes are axis-aligned, so the sampling grid is what ``affine_grid`` makes for a diagonal
    ``theta``; it is built per axis (``(B, H)`` and ``(B, W)`` positions, then broadcast), which
    avoids ``affine_grid``'s ``(B, H * W, 3)`` product and clamps ``B * (H + W)`` numbers, not ``B * H * W``.

    Args:
        x: ``(B, C, H, W)`` float images.
        boxes: ``(B, 4)`` float boxes ``(y0, x0, h, w)`` in pixels of ``x`` (top-left corner and size;
            integers give MONAI's ``SpatialCrop(roi_start=(y0, x0), roi_end=(y0 + h, x0 + w))``).
        size: ``(H_out, W_out)``; default ``(H, W)``.
        clamp_to_box: clamp the sampling positions to the box (see above); without it the pixels just
            outside the box take part in the interpolation at its edges.
        flip: ``(B,)`` bool: flip these outputs along ``flip_dim`` (done by mirroring the sampling
            positions, so it costs nothing).
        flip_dim: ``-2`` (rows) or ``-1`` (columns).

    Returns:
        ``(B, C, H_out, W_out)`` tensor, same dtype and device as ``x``.
    """
    b, _, h_in, w_in = x.shape
    h_out, w_out = (h_in, w_in) if size is None else (int(size[0]), int(size[1]))
    boxes = boxes.to(device=x.device, dtype=torch.float32)
    y0, x0, bh, bw = (v[:, None] for v in boxes.unbind(1))

    def positions(n_out: int, n_in: int, start: torch.Tensor, side: torch.Tensor, dim: int) -> torch.Tensor:
        # normalised (align_corners=False) output coordinate u reads u * side / n_in + (side + 2 start) / n_in - 1
        u = (2 * torch.arange(n_out, device=x.device, dtype=torch.float32) + 1) / n_out - 1
        if flip is not None and dim == flip_dim:
            u = torch.where(flip.to(x.device)[:, None], -u, u)  # output i reads what n_out - 1 - i would
        pos = u * (side / n_in) + (side + 2 * start) / n_in - 1
        if clamp_to_box:
            # pixel centre p sits at (2 p + 1) / n - 1; the box's centres run from start to start + side - 1
            pos = torch.clamp(pos, (2 * start + 1) / n_in - 1, (2 * (start + side) - 1) / n_in - 1)
        return pos

    gy = positions(h_out, h_in, y0, bh, -2)[:, :, None].expand(b, h_out, w_out)
    gx = positions(w_out, w_in, x0, bw, -1)[:, None, :].expand(b, h_out, w_out)
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


@dataclass
class SliceAugmentParams:
    """One draw of :class:`RandSliceAugment`'s parameters for a batch of ``B`` images, on its device.

    Attributes:
        boxes: ``(B, 4)`` float crop boxes ``(y0, x0, h, w)`` in input pixels, or ``None`` (no crop).
        flip: ``(B,)`` bool, flip this sample.
        noise: ``(B, C, H, W)`` Gaussian noise to add (zeros for the samples without noise), or ``None``.
        erase: ``(B, 4)`` int64 boxes ``(y0, x0, h, w)`` set to 0, or ``None``.
        erase_on: ``(B,)`` bool, erase this sample's box.
    """

    boxes: torch.Tensor | None
    flip: torch.Tensor
    noise: torch.Tensor | None
    erase: torch.Tensor | None
    erase_on: torch.Tensor


class RandSliceAugment(nn.Module):
    """The random tail of the slice train chain, on whole batches on their own device.

    Per sample, in the order of :func:`hcp_cam.transforms.build_slice_transforms`: a random crop
    of the image zero-padded by ``crop_margin`` (with ``crop_scale=(1, 1)``, the default, a random
    integer translation of up to ``crop_margin / 2`` of the size each way, the distribution of
    ``SpatialPadd`` + ``RandSpatialCropd``; other scales crop a larger or smaller box and resize it)
    -> flip along ``flip_axis`` with ``flip_prob`` -> Gaussian noise ``N(0, noise_std)`` with
    ``noise_prob`` -> multiplication by the equally transformed brain mask (the non-zero pixels of
    the input), so noise lands in the brain only and the background stays exactly 0 -> with
    ``erase_prob`` one box of side ``erase_size`` (fractions of the size) set to 0.
    The crop of image and mask is one ``affine_grid``/``grid_sample`` call (:func:`crop_resize`).

    Why not MONAI's random transforms: each draws one set of parameters per call, so applied to a
    ``(B, C, H, W)`` batch every sample would share one flip, one crop and one erased box, and
    drawing per sample would need a Python loop over the batch (B small calls, each with its own
    host-side draws) on the GPU. Here the draws are ``(B,)`` tensors made on the device by a
    ``torch.Generator``, and every step is a few batched kernels.

    In ``eval()`` mode the module is the identity. Parameters and defaults are those of
    :func:`~hcp_cam.transforms.build_slice_transforms`.

    Args:
        flip_prob: probability of the flip.
        flip_axis: slice axis flipped (0: rows, dimension ``-2`` of the batch; 1: columns).
        noise_std: standard deviation of the noise, in the units of the normalised slice.
        noise_prob: probability of adding noise.
        noise_sample_std: draw each sample's SD uniformly from ``[0, noise_std]``.
        crop_margin: padding before the random crop, as a fraction of the image size (0: no crop).
        crop_scale: least and largest side of the crop box, as fractions of the image size; the box
            is resized to the image size (``(1, 1)``: translation only, no resampling).
        erase_prob: probability of random erasing.
        erase_size: least and largest erased box side, as fractions of the image size.

    Raises:
        ValueError: a probability outside [0, 1], a negative margin or SD, ``flip_axis`` not 0 or 1,
            or a crop or erase size range that is empty or does not fit.
    """

    def __init__(
        self,
        flip_prob: float = 0.5,
        flip_axis: int = 0,
        noise_std: float = 0.3,
        noise_prob: float = 0.5,
        noise_sample_std: bool = False,
        crop_margin: float = 0.125,
        crop_scale: tuple[float, float] = (1.0, 1.0),
        erase_prob: float = 0.5,
        erase_size: tuple[float, float] = (0.1, 0.33),
    ) -> None:
        super().__init__()
        for name, p in (("flip_prob", flip_prob), ("noise_prob", noise_prob), ("erase_prob", erase_prob)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if flip_axis not in (0, 1):
            raise ValueError(f"flip_axis must be 0 or 1, got {flip_axis}")
        if crop_margin < 0 or noise_std < 0:
            raise ValueError(f"crop_margin and noise_std must be >= 0, got {crop_margin}, {noise_std}")
        lo, hi = (float(v) for v in crop_scale)
        if not 0 < lo <= hi <= 1.0 + crop_margin:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1 + crop_margin, got {crop_scale}")
        if not 0 < erase_size[0] <= erase_size[1] <= 1:
            raise ValueError(f"erase_size must satisfy 0 < low <= high <= 1, got {erase_size}")
        self.flip_prob = float(flip_prob)
        self.flip_axis = int(flip_axis)
        self.noise_std = float(noise_std)
        self.noise_prob = float(noise_prob)
        self.noise_sample_std = bool(noise_sample_std)
        self.crop_margin = float(crop_margin)
        self.crop_scale = (lo, hi)
        self.erase_prob = float(erase_prob)
        self.erase_size = (float(erase_size[0]), float(erase_size[1]))
        self._seed: int | None = None
        self._generators: dict[torch.device, torch.Generator] = {}

    def extra_repr(self) -> str:
        return (
            f"flip_prob={self.flip_prob}, flip_axis={self.flip_axis}, noise_std={self.noise_std}, "
            f"noise_prob={self.noise_prob}, crop_margin={self.crop_margin}, crop_scale={self.crop_scale}, "
            f"erase_prob={self.erase_prob}, erase_size={self.erase_size}"
        )

    def set_random_state(self, seed: int | None = None) -> RandSliceAugment:
        """Seed the module's own generators (one per device), as MONAI's ``Randomizable``."""
        self._seed = None if seed is None else int(seed)
        self._generators.clear()
        return self

    def generator(self, device: torch.device) -> torch.Generator:
        """The module's generator on ``device`` (seeded by :meth:`set_random_state`, else at random)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._generators:
            g = torch.Generator(device=device)
            g.manual_seed(self._seed if self._seed is not None else int(torch.randint(2**62, ()).item()))
            self._generators[device] = g
        return self._generators[device]

    def _padded(self, n: int) -> int:
        return int(round(n * (1.0 + self.crop_margin)))

    def randomize(
        self, shape: Sequence[int], device: str | torch.device, generator: torch.Generator | None = None
    ) -> SliceAugmentParams:
        """Draw the parameters of every sample of a batch of ``shape`` ``(B, C, H, W)``.

        Args:
            shape: the batch shape.
            device: where the parameters (and the noise) are made.
            generator: a generator on ``device``; default the module's own (:meth:`generator`).

        Returns:
            the parameters, for :meth:`apply`.
        """
        b, c, h, w = (int(s) for s in shape)
        dev = torch.device(device)
        g = self.generator(dev) if generator is None else generator
        # every uniform draw of the batch in one kernel: columns are flip, noise on, noise SD,
        # erase on, crop scale, crop start (y, x), erase side (y, x), erase corner (y, x)
        u = torch.rand((b, 11), generator=g, device=dev).unbind(1)
        boxes = None
        if self.crop_margin > 0 or self.crop_scale != (1.0, 1.0):
            lo, hi = self.crop_scale
            scale = lo + (hi - lo) * u[4]  # one scale for both axes: the slice keeps its aspect
            box = []
            for n, r in ((h, u[5]), (w, u[6])):
                padded = max(self._padded(n), n)
                side = (n * scale).clamp(max=float(padded))
                # integer start, uniform in [0, padded - side] (RandSpatialCrop: randint(0, P - S + 1)),
                # relative to the image: SpatialPad puts (P - S) // 2 before it
                box += [torch.floor(r * (torch.floor(padded - side) + 1)) - (padded - n) // 2, side]
            boxes = torch.stack((box[0], box[2], box[1], box[3]), dim=1)
        flip = u[0] < self.flip_prob
        noise = None
        if self.noise_prob > 0 and self.noise_std > 0:
            std = torch.where(u[1] < self.noise_prob, self.noise_std, 0.0)
            if self.noise_sample_std:
                std = std * u[2]
            noise = torch.randn((b, c, h, w), generator=g, device=dev) * std[:, None, None, None]
        erase = None
        erase_on = u[3] < self.erase_prob
        if self.erase_prob > 0:
            corner, sides = [], []
            for n, r_side, r_corner in ((h, u[7], u[9]), (w, u[8], u[10])):
                lo_px = max(1, int(round(self.erase_size[0] * n)))
                hi_px = min(n, max(lo_px, int(round(self.erase_size[1] * n))))
                side = lo_px + torch.floor(
                    r_side * (hi_px - lo_px + 1)
                )  # RandCoarseDropout: randint(lo, hi + 1)
                corner.append(torch.floor(r_corner * (n - side + 1)))
                sides.append(side)
            erase = torch.stack((corner[0], corner[1], sides[0], sides[1]), dim=1).long()
        return SliceAugmentParams(boxes=boxes, flip=flip, noise=noise, erase=erase, erase_on=erase_on)

    def apply(self, x: torch.Tensor, params: SliceAugmentParams) -> torch.Tensor:
        """Apply drawn parameters: crop -> flip -> noise -> brain mask -> erase.

        Args:
            x: ``(B, C, H, W)`` float images, 0 outside the brain (the slice cache's images).
            params: from :meth:`randomize` (or made by hand, e.g. in tests).

        Returns:
            ``(B, C, H, W)`` augmented images (a new tensor; ``x`` is not modified).
        """
        b, c, h, w = x.shape
        dim = -2 if self.flip_axis == 0 else -1
        brain = (x != 0).any(dim=1, keepdim=True) if c > 1 else x != 0
        if params.boxes is not None:
            # image and mask in one call; the flip mirrors the sampling positions
            both = crop_resize(
                torch.cat((x, brain.to(x.dtype)), dim=1), params.boxes, (h, w), flip=params.flip, flip_dim=dim
            )
            x, keep = both[:, :c], both[:, c:] > 0.5  # the bilinear mask thresholded: nearest-like
        else:
            flip = params.flip.view(b, 1, 1, 1)
            x, keep = torch.where(flip, x.flip(dim), x), torch.where(flip, brain.flip(dim), brain)
        if params.noise is not None:
            x = x + params.noise.to(x.dtype)
        if params.erase is not None:
            y0, x0, eh, ew = (v[:, None] for v in params.erase.unbind(1))
            rows = torch.arange(h, device=x.device)[None]
            cols = torch.arange(w, device=x.device)[None]
            in_rows = ((rows >= y0) & (rows < y0 + eh) & params.erase_on[:, None]).view(b, 1, h, 1)
            in_cols = ((cols >= x0) & (cols < x0 + ew)).view(b, 1, 1, w)
            keep = keep & ~(in_rows & in_cols)
        return torch.where(keep, x, 0.0)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a ``(B, C, H, W)`` batch (identity in ``eval()`` mode).

        Args:
            x: the batch, on any device.
            generator: a generator on ``x.device``; default the module's own.
        """
        if not self.training:
            return x
        if x.ndim != 4:
            raise ValueError(f"RandSliceAugment takes (B, C, H, W) batches, got shape {tuple(x.shape)}")
        return self.apply(x, self.randomize(x.shape, x.device, generator))


def epoch_seed(*values: int) -> int:
    """A 63-bit seed mixed from integers (seed, epoch, rank, ...) by NumPy's ``SeedSequence``."""
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


class DeviceBatchLoader:
    """Batches of a :class:`SliceCache`, shuffled per epoch and sharded across DDP ranks, on its device.

    Iterating yields dicts ``{"image": (B, C, S, S), "label": (B,), "subject": [str] * B,
    "acquisition": [str] * B, "axis": (B,), "index": (B,)}`` (image and label on the cache's device;
    the ids on the host, for the subject-level metrics), which MONAI's engines take with their default
    ``prepare_batch``. ``augment`` runs on each gathered batch.

    The order of an epoch depends on ``seed`` and the epoch only (as ``DistributedSampler``, call
    :meth:`set_epoch`, or attach a :class:`SetEpochHandler`); the augmentation generator is reseeded
    from ``(seed, epoch, rank)`` at each epoch, so a resumed run sees the batches and augmentations of
    an uninterrupted one. With several ranks, each takes every ``world_size``-th index of the
    shuffled order (after padding the order with its first indices to a multiple of ``world_size``
    when ``even_divisible``): the ranks' slices are disjoint, as with MONAI's ``DistributedSampler``.

    Args:
        cache: the slices.
        batch_size: slices per batch.
        shuffle: a new random order each epoch (else the cache's order).
        drop_last: drop the last, smaller batch of a rank.
        augment: a callable on ``(B, C, S, S)`` batches taking ``generator=`` (:class:`RandSliceAugment`);
            ``None`` for none.
        seed: of the order and of the augmentation.
        rank, world_size: this process's shard; ``None`` takes them from ``torch.distributed`` when it
            is initialised (else 0 and 1). Pass ``world_size=1`` to give every rank all slices (validation).
        even_divisible: pad the order so every rank gets as many slices (else the first ranks get one more).
        channels_last: yield images in ``torch.channels_last`` memory format.

    Raises:
        ConfigError: ``batch_size`` < 1, ``rank`` outside ``[0, world_size)``, or no batch at all for this rank.
    """

    def __init__(
        self,
        cache: SliceCache,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Callable[..., torch.Tensor] | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        even_divisible: bool = True,
        channels_last: bool = False,
    ) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        dist = torch.distributed
        initialised = dist.is_available() and dist.is_initialized()
        self.world_size = (
            int(world_size) if world_size is not None else (dist.get_world_size() if initialised else 1)
        )
        if rank is not None:
            self.rank = int(rank)
        else:
            self.rank = dist.get_rank() if initialised and self.world_size > 1 else 0
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {self.rank} is outside [0, {self.world_size})")
        self.cache = cache
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self.seed = int(seed)
        self.even_divisible = bool(even_divisible)
        self.channels_last = bool(channels_last)
        self.epoch = 0
        self._generator: torch.Generator | None = None
        if len(self) == 0:
            raise ConfigError(
                f"{self.num_samples} slices on rank {self.rank} make no batch of {self.batch_size}"
                f"{' (drop_last)' if self.drop_last else ''}: lower batch_size or use more slices"
            )

    @property
    def num_samples(self) -> int:
        """Slices this rank sees per epoch."""
        n, ws = len(self.cache), self.world_size
        if self.even_divisible:
            return math.ceil(n / ws)
        return len(range(self.rank, n, ws))

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's indices into the cache for ``epoch`` (default the current one), int64 on the CPU."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = len(self.cache)
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.even_divisible and self.world_size > 1:
            total = self.num_samples * self.world_size
            order = torch.cat([order, order[: total - n]]) if total > n else order
        return order[self.rank :: self.world_size]

    def _augment_generator(self, epoch: int) -> torch.Generator:
        device = self.cache.device
        if self._generator is None:
            self._generator = torch.Generator(device=device)
        self._generator.manual_seed(epoch_seed(self.seed, epoch, self.rank, 1))
        return self._generator

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # a generator: the order is fixed when the first batch is asked for, i.e. after the
        # engine's EPOCH_STARTED handlers (SetEpochHandler) ran, as DataLoader + DistributedSampler
        epoch = self.epoch
        order = self.indices(epoch)
        order_dev = order.to(self.cache.device)
        g = self._augment_generator(epoch) if self.augment is not None else None
        c = self.cache
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, len(order))
            idx, idx_host = order_dev[lo:hi], order[lo:hi]
            image = c.images.index_select(0, idx)
            if self.augment is not None:
                image = self.augment(image, generator=g)
            if self.channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            host = idx_host.tolist()
            yield {
                "image": image,
                "label": c.labels.index_select(0, idx),
                "subject": [c.subjects[i] for i in host],
                "acquisition": [c.acquisitions[i] for i in host],
                "axis": c.axes[idx_host],
                "index": c.indices[idx_host],
            }


class SetEpochHandler:
    """Calls ``loader.set_epoch(engine.state.epoch)`` when each epoch starts (a no-op for loaders
    without ``set_epoch``, such as MONAI's ``DataLoader``, whose ``DistributedSampler`` the engine
    already handles). Attach it to the trainer of a :class:`DeviceBatchLoader`.

    Args:
        loader: the trainer's data loader.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def attach(self, engine: Engine) -> None:
        if hasattr(self.loader, "set_epoch") and not isinstance(self.loader, DataLoader):
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        self.loader.set_epoch(engine.state.epoch)


def select_loader(pipeline: str, **loaders: Any) -> Any:
    """The loader of the chosen pipeline among ``loaders`` (the bundle disables the others).

    Raises:
        ConfigError: ``pipeline`` is not one of the names, or its loader was not built.
    """
    if pipeline not in loaders:
        raise ConfigError(f"data_pipeline {pipeline!r}: expected one of {sorted(loaders)}")
    loader = loaders[pipeline]
    if loader is None:
        raise ConfigError(f"the {pipeline!r} data loader is disabled in the config")
    return loader
