"""The slice (and volume) preprocessing and augmentation settings, declared once.

Four code paths turn an FA slice (or volume) into a network input: the MONAI train and eval chains
(:func:`~hcp_cam.transforms.augment.build_slice_transforms`), their batched twin for whole-brain CAM
(:class:`~hcp_cam.transforms.slice_batch.BatchedSliceEval`), the device augmentation of the
``"device"`` training pipeline (:class:`~hcp_cam.training.device.RandSliceAugment`) and the 3D chain
(:func:`~hcp_cam.transforms.augment.build_volume_transforms`). Each is built from one
:class:`PreprocessingParams`, so a setting is changed in one place. A bundle config declares it once::

    "preprocessing": {"_target_": "hcp_cam.transforms.PreprocessingParams", "image_size": "@image_size"}

This module imports neither torch nor MONAI: a config can build it before anything heavy is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hcp_cam.errors import ConfigError

__all__ = ["PreprocessingParams", "IMAGE_MODES", "FIELDS", "as_params"]

#: image interpolation modes every path implements (MONAI ``Resize`` names; 3D turns ``bilinear`` into
#: ``trilinear``); the mask is always resized with ``nearest``
IMAGE_MODES = ("bilinear", "nearest", "bicubic", "area")


def _bool(name: str, value: Any) -> bool:
    # `--preprocessing#noise_sample_std false` arrives as the string "false", which bool() takes as true
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be two numbers (low, high), got {value!r}") from None
    return lo, hi


@dataclass(frozen=True)
class PreprocessingParams:
    """The settings of the slice preprocessing (deterministic) and augmentation (random, training only).

    The deterministic steps, in order, on every slice (or volume): a copy of the image (MONAI's
    ``NormalizeIntensity(nonzero=True)`` writes into a float32 input in place), z-score over the brain
    (nonzero pixels; a slice with spread 0 is divided by 1), resize of the longest side to
    ``image_size`` (aspect kept), centred zero pad to ``image_size`` on every side, multiplication by
    the equally resized and padded brain mask. The random steps, in order, after the pad: a
    translation crop (``crop_margin``, ``crop_scale``), a flip, Gaussian noise, the brain mask again (so
    that noise lands inside the brain only and the background stays exactly 0, as at evaluation) and
    random erasing of one box. Volumes (3D networks) get the deterministic steps, the flip and the
    noise; crop and erase are for slices only.

    Args:
        image_size: network input side ``S`` in pixels (voxels for volumes); inputs are ``(C, S, S)``
            (``(C, S, S, S)``). Default 96, the bundle's.
        image_mode: interpolation of the images in the resize, one of :data:`IMAGE_MODES` (default
            ``"bilinear"``, ``align_corners=False``, no anti-aliasing; ``"trilinear"`` for volumes). The
            mask is always resized with ``"nearest"``.
        crop_margin: zero padding before the random crop, as a fraction of ``image_size``: a random
            integer translation of up to ``crop_margin / 2`` of the size each way (default 0.125; 0
            disables). Slices only.
        crop_scale: ``(low, high)`` side of the crop box as fractions of the image size, drawn per
            sample (one scale for both axes), the box then resized to the image size; default
            ``(1.0, 1.0)``, translation only. Other values are implemented by the device augmentation
            only (``build_slice_transforms`` refuses them). Slices only.
        flip_prob: probability of a flip (default 0.5; 0 disables).
        flip_axis: spatial axis flipped (default 0: axis 0 of the slice image, the voxel ``X`` axis for
            slices cut along axes 1 and 2, left-right in RAS/LAS-stored data; for slices cut along
            axis 0 it flips ``Y``). 0 or 1 for slices, 0-2 for volumes.
        noise_std: standard deviation of the Gaussian noise, in units of the normalised image (the
            slice's brain SD); default 0.3.
        noise_prob: probability of adding noise (default 0.5; 0 disables).
        noise_sample_std: draw each sample's SD uniformly from ``[0, noise_std]`` (MONAI's
            ``RandGaussianNoise`` default) instead of using ``noise_std`` (default ``False``).
        erase_prob: probability of erasing one box, set to 0 (default 0.5; 0 disables). Slices only.
        erase_size: ``(low, high)`` side of the erased box, as fractions of the image size, drawn per
            axis (default ``(0.1, 0.33)``). Slices only.

    Raises:
        ConfigError: ``image_size`` < 1, an unknown ``image_mode``, a probability outside [0, 1], a
            negative margin or SD, ``flip_axis`` not in 0-2, or a crop or erase range that is empty or
            does not fit (``0 < low <= high <= 1 + crop_margin``; ``0 < low <= high <= 1``).
    """

    image_size: int = 96
    image_mode: str = "bilinear"
    crop_margin: float = 0.125
    crop_scale: tuple[float, float] = (1.0, 1.0)
    flip_prob: float = 0.5
    flip_axis: int = 0
    noise_std: float = 0.3
    noise_prob: float = 0.5
    noise_sample_std: bool = False
    erase_prob: float = 0.5
    erase_size: tuple[float, float] = (0.1, 0.33)

    def __post_init__(self) -> None:
        # normalise what a JSON config gives (lists, ints for floats) to the declared types
        values = {
            "image_size": int(self.image_size),
            "crop_margin": float(self.crop_margin),
            "crop_scale": _pair("crop_scale", self.crop_scale),
            "flip_prob": float(self.flip_prob),
            "flip_axis": int(self.flip_axis),
            "noise_std": float(self.noise_std),
            "noise_prob": float(self.noise_prob),
            "noise_sample_std": _bool("noise_sample_std", self.noise_sample_std),
            "erase_prob": float(self.erase_prob),
            "erase_size": _pair("erase_size", self.erase_size),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if self.image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {self.image_size}")
        if self.image_mode not in IMAGE_MODES:
            raise ConfigError(f"image_mode must be one of {IMAGE_MODES}, got {self.image_mode!r}")
        for name in ("flip_prob", "noise_prob", "erase_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {p}")
        if self.crop_margin < 0 or self.noise_std < 0:
            raise ConfigError(
                f"crop_margin and noise_std must be >= 0, got {self.crop_margin}, {self.noise_std}"
            )
        if self.flip_axis not in (0, 1, 2):
            raise ConfigError(f"flip_axis must be 0 or 1 (slices) or 2 (volumes), got {self.flip_axis}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1.0 + self.crop_margin:
            raise ConfigError(
                f"crop_scale must satisfy 0 < low <= high <= 1 + crop_margin, got {self.crop_scale}"
            )
        lo, hi = self.erase_size
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"erase_size must satisfy 0 < low <= high <= 1, got {self.erase_size}")

    def replace(self, **changes: Any) -> PreprocessingParams:
        """A copy with ``changes`` (field names) applied and checked again.

        Raises:
            ConfigError: a name that is no field, or a value :class:`PreprocessingParams` refuses.
        """
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown preprocessing setting(s) {unknown}; expected some of {list(FIELDS)}")
        return dataclasses.replace(self, **changes) if changes else self

    def check_slices(self) -> None:
        """Refuse the settings the slice paths cannot honour (``flip_axis`` 2).

        Raises:
            ConfigError: ``flip_axis`` is not 0 or 1.
        """
        if self.flip_axis not in (0, 1):
            raise ConfigError(f"flip_axis must be 0 or 1 for (C, H, W) slices, got {self.flip_axis}")


#: the field names of :class:`PreprocessingParams`, in declaration order
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PreprocessingParams))


def as_params(params: PreprocessingParams | int | None = None, **changes: Any) -> PreprocessingParams:
    """The settings a builder runs with: ``params`` (default :class:`PreprocessingParams()`) with
    ``changes`` applied.

    Args:
        params: the settings, or an int as the image size (``build_slice_transforms(96)``), or ``None``.
        changes: field names and values that replace those of ``params``.

    Raises:
        ConfigError: ``params`` of another type, an unknown field, or a refused value.
    """
    if params is None:
        base = PreprocessingParams()
    elif isinstance(params, PreprocessingParams):
        base = params
    elif isinstance(params, int) and not isinstance(params, bool):
        base = PreprocessingParams(image_size=params)
    else:
        raise ConfigError(
            f"expected PreprocessingParams or an int image size, got {type(params).__name__}: {params!r}"
        )
    return base.replace(**changes)
