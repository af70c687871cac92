"""The slice eval chain on whole stacks of slices at once, and its inverse, for whole-brain CAM.

:func:`~hcp_cam.transforms.augment.build_slice_transforms`' eval chain is a MONAI ``Compose`` applied
to one slice item at a time, and :func:`~hcp_cam.transforms.augment.map_to_slice` inverts it one map at
a time through ``Invertd``. For the whole-brain CAM of an HCP volume (~440 slices over 3 axes) that
costs ~6 ms per slice on a CPU (MetaTensor bookkeeping, not pixels: 2.7 s per subject against 0.3 s for
the network; docs/performance.md), and it would keep a GPU waiting. Every slice cut along one axis has
the same shape, so the chain's steps are the same for all of them: :class:`BatchedSliceEval` applies
them to an ``(n, C, H, W)`` stack in one call per step, on the stack's device, with the same arithmetic
(tests compare it with the MONAI chain and ``map_to_slice`` slice by slice). :class:`SliceEvalCompose`
is the MONAI chain carrying its batched twin, so callers keep passing one object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import Compose

from hcp_cam.transforms.preprocessing import PreprocessingParams, as_params

__all__ = ["BatchedSliceEval", "SliceEvalCompose", "slice_stack", "SliceGeometry"]


class SliceGeometry:
    """Where a ``(H, W)`` slice lands in the ``(S, S)`` network input of the eval chain.

    ``Resized(S, size_mode="longest")`` scales by ``S / max(H, W)`` to ``(round(H * s), round(W * s))``;
    ``SpatialPadd(S)`` pads each side by ``(S - h) // 2`` before and the rest after (MONAI's
    ``symmetric`` method).

    Attributes:
        plane: the source slice shape ``(H, W)``.
        resized: its shape after the resize ``(h, w)``.
        pad: ``((top, bottom), (left, right))`` zero padding to ``(S, S)``.
    """

    def __init__(self, plane: Sequence[int], image_size: int):
        self.plane = (int(plane[0]), int(plane[1]))
        if min(self.plane) < 1:
            raise ValueError(f"slice shape must be positive, got {self.plane}")
        self.image_size = int(image_size)
        scale = self.image_size / max(self.plane)
        self.resized = tuple(int(round(s * scale)) for s in self.plane)
        extra = [max(self.image_size - s, 0) for s in self.resized]
        self.pad = tuple((e // 2, e - e // 2) for e in extra)

    def __repr__(self) -> str:
        return f"SliceGeometry(plane={self.plane}, resized={self.resized}, pad={self.pad})"


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    align = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(x, size=size, mode=mode, align_corners=align)


class BatchedSliceEval:
    """The eval chain of :func:`~hcp_cam.transforms.augment.build_slice_transforms` on a stack of slices.

    Per slice, as the MONAI chain: z-score over the slice's nonzero pixels (all channels; a slice
    without one is left as is; SD 0 -> 1) -> resize, longest side to ``S`` (images with
    ``image_mode``, ``align_corners=False``; the mask ``nearest``) -> centred zero pad to ``(S, S)``
    -> image times (mask > 0). :meth:`invert` undoes the pad and the resize on maps, as
    ``map_to_slice`` does through MONAI's ``Invertd`` (same interpolation mode).

    Args:
        params: the settings (:class:`~hcp_cam.transforms.preprocessing.PreprocessingParams`; the eval
            chain uses ``image_size`` ``S`` and ``image_mode``), or an int as ``S``, or ``None`` for the
            defaults.
        changes: fields of ``params`` to replace.

    Raises:
        ConfigError: a setting ``PreprocessingParams`` refuses (e.g. an unknown ``image_mode``).
    """

    def __init__(self, params: PreprocessingParams | int | None = None, **changes: Any):
        self.params = as_params(params, **changes)

    @property
    def image_size(self) -> int:
        """Network input side ``S``."""
        return self.params.image_size

    @property
    def image_mode(self) -> str:
        """Interpolation of the images."""
        return self.params.image_mode

    def geometry(self, plane: Sequence[int]) -> SliceGeometry:
        """The resize and pad for slices of shape ``plane`` ``(H, W)``."""
        return SliceGeometry(plane, self.image_size)

    @staticmethod
    def normalise(images: torch.Tensor) -> torch.Tensor:
        """Z-score each ``(C, H, W)`` sample over its nonzero values (``NormalizeIntensity(nonzero=True)``)."""
        x = images.to(torch.float32)
        nz = x != 0
        flat, nzf = x.flatten(1), nz.flatten(1)
        count = nzf.sum(1)
        n = count.clamp(min=1).to(torch.float32)
        mean = (flat * nzf).sum(1) / n
        var = (((flat - mean[:, None]) * nzf) ** 2).sum(1) / n
        std = var.sqrt()
        std = torch.where(std == 0, torch.ones_like(std), std)
        shape = (-1,) + (1,) * (x.ndim - 1)
        z = (x - mean.view(shape)) / std.view(shape)
        # only nonzero values change; a slice with none stays as it was
        return torch.where(nz, z, x)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Network inputs of a stack of slices.

        Args:
            images: ``(n, C, H, W)`` slices (FA), any float or integer dtype, on any device.
            masks: ``(n, 1, H, W)`` brain masks of the same slices (nonzero = brain).

        Returns:
            float32 ``(n, C, S, S)`` on the images' device.
        """
        if images.ndim != 4 or masks.ndim != 4 or masks.shape[1] != 1:
            raise ValueError(
                f"need images (n, C, H, W) and masks (n, 1, H, W), got {images.shape}, {masks.shape}"
            )
        if images.shape[0] != masks.shape[0] or images.shape[-2:] != masks.shape[-2:]:
            raise ValueError(
                f"images {tuple(images.shape)} and masks {tuple(masks.shape)} differ in n or (H, W)"
            )
        geo = self.geometry(images.shape[-2:])
        (t, b), (left, r) = geo.pad
        x = _resize(self.normalise(images), geo.resized, self.image_mode)
        m = _resize(masks.to(device=images.device, dtype=torch.float32), geo.resized, "nearest")
        x = F.pad(x, (left, r, t, b))
        m = F.pad(m, (left, r, t, b))
        return x * (m > 0)

    def invert(self, maps: torch.Tensor, plane: Sequence[int]) -> torch.Tensor:
        """Maps at input size back onto their source slices.

        Args:
            maps: ``(n, m, S, S)`` maps of slices of shape ``plane``.
            plane: the source slice shape ``(H, W)``.

        Returns:
            float32 ``(n, m, H, W)`` on the maps' device.
        """
        geo = self.geometry(plane)
        s = self.image_size
        if maps.ndim != 4 or tuple(maps.shape[-2:]) != (s, s):
            raise ValueError(f"need maps (n, m, {s}, {s}), got {tuple(maps.shape)}")
        (t, _), (left, _) = geo.pad
        h, w = geo.resized
        cropped = maps.to(torch.float32)[..., t : t + h, left : left + w]
        return _resize(cropped, geo.plane, self.image_mode)


class SliceEvalCompose(Compose):
    """The per-slice MONAI eval chain, carrying :class:`BatchedSliceEval` as ``batched``: the same
    transforms for stacks of slices (used by :func:`~hcp_cam.cam.volume.cam_volume`)."""

    def __init__(self, transforms: Sequence, batched: BatchedSliceEval, **kwargs):
        super().__init__(transforms, **kwargs)
        self.batched = batched


def slice_stack(volume: torch.Tensor, axis: int, indices: torch.Tensor) -> torch.Tensor:
    """Slices ``indices`` of a ``(C, X, Y, Z)`` volume along voxel ``axis`` as ``(n, C, H, W)``: the
    layout of :class:`~hcp_cam.transforms.slicing.Slices25D` (``volume[:, ..., i, ...]``) stacked."""
    if volume.ndim != 4 or axis not in (0, 1, 2):
        raise ValueError(f"need a (C, X, Y, Z) volume and axis 0-2, got {tuple(volume.shape)}, axis={axis}")
    return volume.index_select(axis + 1, indices.to(volume.device)).movedim(axis + 1, 0)
