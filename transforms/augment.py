"""The per-slice (and per-volume) transform chains, train with augmentation and eval without, and
the inverse of the eval chain for maps.

Both chains are built from MONAI's own dictionary transforms, with the settings of one
:class:`~hcp_cam.transforms.preprocessing.PreprocessingParams`. The spatial steps of the eval chain
(resize, pad) are invertible, so :func:`map_to_slice` can put a map computed at network input size
back onto the pixels of its source slice (or volume) with MONAI's ``Invertd``.
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

from hcp_cam.errors import ConfigError
from hcp_cam.transforms.preprocessing import PreprocessingParams, as_params
from hcp_cam.transforms.slice_batch import BatchedSliceEval, SliceEvalCompose

__all__ = ["build_slice_transforms", "build_volume_transforms", "map_to_slice", "DERIVED_MASK_KEY"]

#: key of the brain mask derived from the image when the items carry none (``mask_key=None``)
DERIVED_MASK_KEY = "_brain_mask"
_MAP_KEY = "_cam_map"
# MONAI's name for linear interpolation in 3D
_VOLUME_MODES = {"bilinear": "trilinear"}


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    """Brain = nonzero voxels of any channel (module level so the chain pickles for DataLoader workers)."""
    return (x != 0).any(dim=0, keepdim=True).to(torch.float32)


def _copy(x: torch.Tensor) -> torch.Tensor:
    """A copy: MONAI's ``NormalizeIntensity(nonzero=True)`` writes into a float32 input in place."""
    return x.clone()


def build_slice_transforms(
    params: PreprocessingParams | int | None = None,
    keys: Sequence[str] = ("image",),
    mask_key: str | None = "mask",
    **changes: Any,
) -> tuple[Compose, Compose]:
    """Build the train and eval chains applied to each slice item of :class:`~hcp_cam.transforms.Slices25Dd`.

    Eval: ``Lambdad`` copy of the images (``NormalizeIntensityd`` would otherwise overwrite the input
    item in place) -> ``NormalizeIntensityd(nonzero=True)`` per slice (z-score of the brain voxels, which
    removes per-subject offsets) -> ``Resized(image_size, size_mode="longest")`` (aspect kept; the mask
    with nearest interpolation) -> ``SpatialPadd(image_size)`` (zero pad, centred) -> ``MaskIntensityd``
    -> ``EnsureTyped(float32)``.

    Train inserts, after the pad: ``SpatialPadd(image_size * (1 + crop_margin))`` +
    ``RandSpatialCropd(image_size)`` (a random translation of up to ``crop_margin / 2`` of the size
    each way), ``RandFlipd(spatial_axis=flip_axis)``, ``RandGaussianNoised(0, noise_std)`` on the
    normalised intensities, then ``MaskIntensityd`` with the equally transformed mask, so that noise
    lands inside the brain only and the background stays exactly 0 as at evaluation, and
    ``RandCoarseDropoutd`` (random erasing of one box, filled with 0). A step whose probability (or
    margin) is 0 is left out.

    Args:
        params: the settings (:class:`~hcp_cam.transforms.preprocessing.PreprocessingParams`, whose
            docstring gives every field's meaning and default), or an int as the image size ``S``, or
            ``None`` for the defaults. Outputs are ``(C, S, S)``.
        keys: image keys (``(C, H, W)`` slices); they and the mask follow the same spatial ops.
        mask_key: key of the ``(1, H, W)`` brain mask slice; ``None`` derives it from the nonzero
            pixels of the first key (kept under :data:`DERIVED_MASK_KEY` only inside the chain).
        changes: fields of ``params`` to replace (e.g. ``noise_prob=1.0``).

    Returns:
        ``(train, eval)`` ``Compose`` chains; ``eval`` holds no random transform and can be inverted.
        With the default keys (``image``, mask ``mask``) ``eval`` is a
        :class:`~hcp_cam.transforms.slice_batch.SliceEvalCompose`, whose ``batched`` applies the same
        steps to whole stacks of slices.

    Raises:
        ConfigError: a setting :class:`PreprocessingParams` refuses, ``flip_axis`` 2, or a
            ``crop_scale`` other than ``(1, 1)`` (the device augmentation's alone).
    """
    p = as_params(params, **changes)
    p.check_slices()
    if p.crop_scale != (1.0, 1.0):
        raise ConfigError(
            f"crop_scale {p.crop_scale}: scaled crops are implemented by the device augmentation only "
            "(data_pipeline device); the MONAI chain crops at scale (1, 1)"
        )
    train, evaluate = _chains(p, keys, mask_key, spatial_dims=2)
    if _default_layout(keys, mask_key):
        # the layout cam_volume slices into: its batched twin does the same on whole stacks
        return Compose(train), SliceEvalCompose(evaluate, BatchedSliceEval(p))
    return Compose(train), Compose(evaluate)


def build_volume_transforms(
    params: PreprocessingParams | int | None = None,
    keys: Sequence[str] = ("image",),
    mask_key: str | None = "mask",
    **changes: Any,
) -> tuple[Compose, Compose]:
    """Build the train and eval chains of whole FA volumes (``(C, X, Y, Z)`` items, 3D networks).

    The steps of :func:`build_slice_transforms` in 3D, with the same settings: copy, z-score of the
    brain voxels, longest-side resize to ``image_size`` (``bilinear`` becomes ``trilinear``), zero pad
    to a cube, mask; training adds the flip along ``flip_axis`` (0-2) and the in-brain Gaussian noise.
    The translation crop and the random erasing are for slices only and are not applied.

    Args:
        params, keys, mask_key, changes: as in :func:`build_slice_transforms` (``(C, X, Y, Z)`` images
            and a ``(1, X, Y, Z)`` mask).

    Returns:
        ``(train, eval)`` ``Compose`` chains giving ``(C, S, S, S)`` images; ``eval`` can be inverted.

    Raises:
        ConfigError: a setting :class:`PreprocessingParams` refuses, or ``image_mode="bicubic"`` (no
            3D bicubic interpolation in torch).
    """
    p = as_params(params, **changes)
    if p.image_mode == "bicubic":
        raise ConfigError("image_mode 'bicubic' has no 3D version: use 'bilinear' (trilinear) for volumes")
    train, evaluate = _chains(p, keys, mask_key, spatial_dims=3)
    return Compose(train), Compose(evaluate)


def _default_layout(keys: Sequence[str] | str, mask_key: str | None) -> bool:
    return ([keys] if isinstance(keys, str) else list(keys)) == ["image"] and mask_key == "mask"


def _chains(
    p: PreprocessingParams, keys: Sequence[str] | str, mask_key: str | None, spatial_dims: int
) -> tuple[list, list]:
    """The train and eval steps for ``spatial_dims`` 2 (slices) or 3 (volumes: no crop, no erase)."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    mkey = DERIVED_MASK_KEY if mask_key is None else mask_key
    spatial = [*keys, mkey]
    mode = p.image_mode if spatial_dims == 2 else _VOLUME_MODES.get(p.image_mode, p.image_mode)

    head: list = []
    if mask_key is None:
        head += [CopyItemsd(keys[0], names=mkey), Lambdad(mkey, _nonzero)]
    head += [
        Lambdad(keys, _copy),  # keep the caller's item (and a dataset's cache) untouched
        NormalizeIntensityd(keys, nonzero=True),
        Resized(
            spatial,
            p.image_size,
            size_mode="longest",
            mode=[mode] * len(keys) + ["nearest"],
            anti_aliasing=False,
        ),
        SpatialPadd(spatial, p.image_size),
    ]
    tail: list = [EnsureTyped(spatial, dtype=torch.float32)]
    if mask_key is None:
        tail.append(DeleteItemsd(mkey))
    eval_steps = [*head, MaskIntensityd(keys, mask_key=mkey), *tail]

    train: list = list(head)
    padded = int(round(p.image_size * (1.0 + p.crop_margin)))
    if spatial_dims == 2 and padded > p.image_size:
        train += [SpatialPadd(spatial, padded), RandSpatialCropd(spatial, p.image_size, random_size=False)]
    if p.flip_prob > 0:
        train.append(RandFlipd(spatial, prob=p.flip_prob, spatial_axis=p.flip_axis))
    if p.noise_prob > 0 and p.noise_std > 0:
        train.append(
            RandGaussianNoised(
                keys, prob=p.noise_prob, mean=0.0, std=p.noise_std, sample_std=p.noise_sample_std
            )
        )
    train.append(MaskIntensityd(keys, mask_key=mkey))
    if spatial_dims == 2 and p.erase_prob > 0:
        lo = max(1, int(round(p.erase_size[0] * p.image_size)))
        hi = max(lo, int(round(p.erase_size[1] * p.image_size)))
        train.append(
            RandCoarseDropoutd(
                keys, holes=1, spatial_size=lo, max_spatial_size=hi, fill_value=0.0, prob=p.erase_prob
            )
        )
    train += tail
    return train, eval_steps


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
