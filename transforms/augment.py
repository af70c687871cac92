"""The per-slice transform chains (train with augmentation, eval without) and their inverse for maps.

Both chains are built from MONAI's own dictionary transforms. The spatial steps of the eval chain
(resize, pad) are invertible, so :func:`map_to_slice` can put a map computed at network input size
back onto the pixels of its source slice with MONAI's ``Invertd``.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CopyItemsd,
    DeleteItemsd,
    EnsureTyped,
    Invertd,
    Lambdad,
    MaskIntensityd,
    NormalizeIntensityd,
    RandCoarseDropoutd,
    RandFlipd,
    RandGaussianNoised,
    RandSpatialCropd,
    Resized,
    SpatialPadd,
)

from hcp_cam.transforms.slice_batch import BatchedSliceEval, SliceEvalCompose

__all__ = ["build_slice_transforms", "map_to_slice", "DERIVED_MASK_KEY"]

#: key of the brain mask derived from the image when the items carry none (``mask_key=None``)
DERIVED_MASK_KEY = "_brain_mask"
_MAP_KEY = "_cam_map"


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    """Brain = nonzero voxels of any channel (module level so the chain pickles for DataLoader workers)."""
    return (x != 0).any(dim=0, keepdim=True).to(torch.float32)


def _copy(x: torch.Tensor) -> torch.Tensor:
    """A copy: MONAI's ``NormalizeIntensity(nonzero=True)`` writes into a float32 input in place."""
    return x.clone()


def build_slice_transforms(
    image_size: int = 224,
    keys: Sequence[str] = ("image",),
    mask_key: str | None = "mask",
    flip_prob: float = 0.5,
    flip_axis: int = 0,
    noise_std: float = 0.3,
    noise_prob: float = 0.5,
    noise_sample_std: bool = False,
    crop_margin: float = 0.125,
    erase_prob: float = 0.5,
    erase_size: tuple[float, float] = (0.1, 0.33),
    image_mode: str = "bilinear",
) -> tuple[Compose, Compose]:
    """Build the train and eval chains applied to each slice item of :class:`~hcp_cam.transforms.Slices25Dd`.

    Eval: a copy of the images (``NormalizeIntensityd`` would otherwise overwrite the input item
    in place), ``NormalizeIntensityd(nonzero=True)`` per slice (z-score of the brain voxels, which removes
    per-subject offsets) -> ``Resized(image_size, size_mode="longest")`` (aspect kept; the mask with
    nearest interpolation) -> ``SpatialPadd(image_size)`` (zero pad, centred) -> ``MaskIntensityd``
    -> ``EnsureTyped(float32)``.

    Train inserts, after the pad: ``SpatialPadd(image_size * (1 + crop_margin))`` +
    ``RandSpatialCropd(image_size)`` (a random translation of up to ``crop_margin / 2`` of the size
    each way), ``RandFlipd(spatial_axis=flip_axis)``, ``RandGaussianNoised(0, noise_std)`` on the
    normalised intensities, then ``MaskIntensityd`` with the equally transformed mask, so that noise
    lands inside the brain only and the background stays exactly 0 as at evaluation, and
    ``RandCoarseDropoutd`` (random erasing of one box, filled with 0).

    The flip is along axis 0 of the slice image: the voxel ``X`` axis for slices cut along axes 1 and
    2, which is left-right in RAS/LAS-stored data; for slices cut along axis 0 (sagittal in such data)
    it flips the ``Y`` axis (anterior-posterior). Set ``flip_prob=0`` to disable it.

    Args:
        image_size: network input size ``S``; outputs are ``(C, S, S)``.
        keys: image keys (``(C, H, W)`` slices); they and the mask follow the same spatial ops.
        mask_key: key of the ``(1, H, W)`` brain mask slice; ``None`` derives it from the nonzero
            pixels of the first key (kept under :data:`DERIVED_MASK_KEY` only inside the chain).
        flip_prob: probability of the flip.
        flip_axis: slice axis flipped (0 or 1).
        noise_std: standard deviation of the Gaussian noise, in units of the slice's brain SD.
        noise_prob: probability of adding noise.
        noise_sample_std: draw the SD uniformly from ``[0, noise_std]`` (MONAI's default) instead of
            using ``noise_std``.
        crop_margin: padding before the random crop, as a fraction of ``image_size`` (0 disables).
        erase_prob: probability of random erasing (0 disables).
        erase_size: least and largest erased box side, as fractions of ``image_size``.
        image_mode: interpolation of the images in ``Resized`` (the mask always uses ``nearest``).

    Returns:
        ``(train, eval)`` ``Compose`` chains; ``eval`` holds no random transform and can be inverted.
        With the default keys (``image``, mask ``mask``) ``eval`` is a
        :class:`~hcp_cam.transforms.slice_batch.SliceEvalCompose`, whose ``batched`` applies the same
        steps to whole stacks of slices.

    Raises:
        ValueError: ``image_size`` < 1, a probability outside [0, 1], or a negative margin.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    for name, p in (("flip_prob", flip_prob), ("noise_prob", noise_prob), ("erase_prob", erase_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    if crop_margin < 0:
        raise ValueError(f"crop_margin must be >= 0, got {crop_margin}")
    mkey = DERIVED_MASK_KEY if mask_key is None else mask_key
    spatial = [*keys, mkey]

    head: list = []
    if mask_key is None:
        head += [CopyItemsd(keys[0], names=mkey), Lambdad(mkey, _nonzero)]
    head += [
        Lambdad(keys, _copy),  # keep the caller's item (and a dataset's cache) untouched
        NormalizeIntensityd(keys, nonzero=True),
        Resized(
            spatial,
            image_size,
            size_mode="longest",
            mode=[image_mode] * len(keys) + ["nearest"],
            anti_aliasing=False,
        ),
        SpatialPadd(spatial, image_size),
    ]
    tail: list = [EnsureTyped(spatial, dtype=torch.float32)]
    if mask_key is None:
        tail.append(DeleteItemsd(mkey))

    eval_steps = [*head, MaskIntensityd(keys, mask_key=mkey), *tail]
    if keys == ["image"] and mask_key == "mask":
        # the layout cam_volume slices into: its batched twin does the same on whole stacks
        eval_chain: Compose = SliceEvalCompose(eval_steps, BatchedSliceEval(image_size, image_mode))
    else:
        eval_chain = Compose(eval_steps)

    train: list = list(head)
    padded = int(round(image_size * (1.0 + crop_margin)))
    if padded > image_size:
        train += [SpatialPadd(spatial, padded), RandSpatialCropd(spatial, image_size, random_size=False)]
    if flip_prob > 0:
        train.append(RandFlipd(spatial, prob=flip_prob, spatial_axis=flip_axis))
    if noise_prob > 0 and noise_std > 0:
        train.append(
            RandGaussianNoised(keys, prob=noise_prob, mean=0.0, std=noise_std, sample_std=noise_sample_std)
        )
    train.append(MaskIntensityd(keys, mask_key=mkey))
    if erase_prob > 0:
        lo = max(1, int(round(erase_size[0] * image_size)))
        hi = max(lo, int(round(erase_size[1] * image_size)))
        train.append(
            RandCoarseDropoutd(
                keys, holes=1, spatial_size=lo, max_spatial_size=hi, fill_value=0.0, prob=erase_prob
            )
        )
    train += tail
    return Compose(train), eval_chain


def map_to_slice(
    map_2d: torch.Tensor | np.ndarray,
    transformed_item: Mapping[Hashable, Any],
    eval_transform: Compose,
    image_key: str = "image",
) -> torch.Tensor:
    """Undo the eval chain's spatial steps (pad, resize) on a map, so it lands on its source slice.

    Uses MONAI's ``Invertd`` with the ``applied_operations`` recorded on ``transformed_item[image_key]``;
    non-spatial steps (normalisation, masking) are not inverted. Works for 3D volumes as well.

    Args:
        map_2d: ``(S, S)``, ``(1, S, S)`` or ``(n, S, S)`` map(s) at network input size (``(n, *S)``
            in 3D).
        transformed_item: ONE item (not a collated batch) as returned by ``eval_transform``, whose
            image is a ``MetaTensor`` carrying its applied operations.
        eval_transform: the chain that produced ``transformed_item``.
        image_key: key of the transformed image.

    Returns:
        float32 ``(n, H, W)`` tensor on the grid of the source slice (interpolated with the chain's
        image mode).

    Raises:
        ValueError: the item's image carries no applied operations, or the map's spatial shape differs
            from the transformed image's.
    """
    img = transformed_item[image_key]
    if not isinstance(img, MetaTensor) or not img.applied_operations:
        raise ValueError(
            f"transformed_item['{image_key}'] carries no applied operations: pass the output of eval_transform "
            "for one item (decollate batches; keep MONAI's meta tracking on)"
        )
    m = torch.as_tensor(map_2d.as_tensor() if isinstance(map_2d, MetaTensor) else map_2d).detach().cpu()
    m = m.to(torch.float32)
    if m.ndim == img.ndim - 1:
        m = m[None]
    if tuple(m.shape[1:]) != tuple(img.shape[1:]):
        raise ValueError(
            f"map spatial shape {tuple(m.shape[1:])} differs from the transformed image's {tuple(img.shape[1:])}"
        )
    inverter = Invertd(_MAP_KEY, transform=eval_transform, orig_keys=image_key, nearest_interp=False)
    with warnings.catch_warnings():
        # MONAI warns that the non-invertible steps (normalise, mask) are skipped: that is intended
        warnings.simplefilter("ignore", UserWarning)
        out = inverter({image_key: img, _MAP_KEY: MetaTensor(m, meta=deepcopy(img.meta))})[_MAP_KEY]
    out = out.as_tensor() if isinstance(out, MetaTensor) else torch.as_tensor(out)
    return out.to(torch.float32)
