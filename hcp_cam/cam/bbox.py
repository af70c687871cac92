"""Bounding boxes of class activation maps, in voxel indices and in world millimetres.

A box follows the text of the CAM paper (Zhou et al., CVPR 2016, section 4.1): segment the voxels
whose value is at least ``fraction`` (20%) of the map's maximum, keep the largest connected
component, and take the box around it. The code released with the paper does something else: it
thresholds at several fractions, boxes every connected component above each one and may return
more than one box per map. Here there is exactly one box per map, as the paper's text describes.

Boxes hold inclusive voxel indices, in the axis order of the array (``(H, W)`` for a slice,
``(X, Y, Z)`` for a volume as nibabel reads it); :func:`box_to_world` takes them through the
image's affine to RAS millimetres.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from hcp_cam.errors import InputError

__all__ = [
    "BoundingBox",
    "EmptyCAMWarning",
    "bounding_box",
    "bounding_boxes",
    "box_of_mask",
    "box_to_world",
    "cam_segmentation",
]


class EmptyCAMWarning(UserWarning):
    """A map has no positive value, so it has no segmentation and its box is empty."""


@dataclass(frozen=True)
class BoundingBox:
    """An axis-aligned box of voxel indices, both ends inclusive.

    Attributes:
        ndim: number of spatial dimensions (2 or 3).
        min_index: first voxel index on each axis, ``()`` for an empty box.
        max_index: last voxel index on each axis (inclusive), ``()`` for an empty box.
    """

    ndim: int
    min_index: tuple[int, ...] = ()
    max_index: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.min_index) != len(self.max_index) or (
            self.min_index and len(self.min_index) != self.ndim
        ):
            raise ValueError(f"box ends {self.min_index}, {self.max_index} do not match ndim={self.ndim}")
        if any(lo > hi for lo, hi in zip(self.min_index, self.max_index, strict=True)):
            raise ValueError(f"box min {self.min_index} exceeds max {self.max_index}")

    @classmethod
    def empty(cls, ndim: int) -> BoundingBox:
        """The box of a map with nothing above the threshold."""
        return cls(ndim=ndim)

    @property
    def is_empty(self) -> bool:
        return not self.min_index

    @property
    def shape(self) -> tuple[int, ...]:
        """Voxels on each axis (``max - min + 1``); zeros for an empty box."""
        if self.is_empty:
            return (0,) * self.ndim
        return tuple(hi - lo + 1 for lo, hi in zip(self.min_index, self.max_index, strict=True))

    @property
    def n_voxels(self) -> int:
        """Number of voxels inside the box (0 if empty)."""
        return int(np.prod(self.shape))

    def slices(self) -> tuple[slice, ...]:
        """Index the box's voxels out of an array: ``array[box.slices()]``."""
        if self.is_empty:
            return (slice(0, 0),) * self.ndim
        return tuple(slice(lo, hi + 1) for lo, hi in zip(self.min_index, self.max_index, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``ndim``, ``empty``, ``min_index``/``max_index`` (lists, or ``None``), ``shape``."""
        return {
            "ndim": self.ndim,
            "empty": self.is_empty,
            "min_index": None if self.is_empty else list(self.min_index),
            "max_index": None if self.is_empty else list(self.max_index),
            "shape": list(self.shape),
        }


def _as_array(cam: np.ndarray | torch.Tensor, what: str = "map") -> np.ndarray:
    if isinstance(cam, torch.Tensor):
        cam = cam.detach().cpu().numpy()
    arr = np.asarray(cam)
    if arr.ndim not in (2, 3):
        raise InputError(
            f"expected a 2D slice or 3D volume {what}, got shape {arr.shape}; "
            "take one map out of a (B, n, *spatial) batch first, or use bounding_boxes"
        )
    return arr


def cam_segmentation(
    cam: np.ndarray | torch.Tensor, fraction: float = 0.2, fully_connected: bool = False
) -> np.ndarray:
    """The largest connected component of ``cam >= fraction * max(cam)``.

    Args:
        cam: ``(H, W)`` or ``(X, Y, Z)`` raw map (any units; only its maximum matters).
        fraction: threshold as a share of the map's maximum, in ``(0, 1]``.
        fully_connected: connect voxels that touch by a corner or edge too (8/26-neighbourhood)
            rather than by a face only (4/6-neighbourhood, the default).

    Returns:
        Boolean array of ``cam``'s shape; all ``False`` (with an :class:`EmptyCAMWarning`) when the
        map's maximum is not positive. Components of equal size: the one met first in C order wins.

    Raises:
        InputError: not 2D/3D, NaN in the map, or ``fraction`` outside ``(0, 1]``.
    """
    arr = _as_array(cam)
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}")
    if np.isnan(arr).any():
        raise InputError(f"map of shape {arr.shape} holds {int(np.isnan(arr).sum())} NaN values")
    peak = float(arr.max()) if arr.size else 0.0
    if not peak > 0.0:
        warnings.warn(
            f"map of shape {arr.shape} has no positive value (max {peak:g}): empty segmentation and box",
            EmptyCAMWarning,
            stacklevel=2,
        )
        return np.zeros(arr.shape, dtype=bool)
    above = (arr >= fraction * peak).astype(np.uint8)
    # SimpleITK scans in the array's C order, and RelabelComponent sorts by size, ties by that order
    labels = sitk.ConnectedComponent(sitk.GetImageFromArray(above), fully_connected)
    largest = sitk.GetArrayFromImage(sitk.RelabelComponent(labels, sortByObjectSize=True))
    return largest == 1


def box_of_mask(mask: np.ndarray | torch.Tensor) -> BoundingBox:
    """The box around every non-zero voxel of ``mask`` (``(H, W)`` or ``(X, Y, Z)``); empty if none."""
    arr = _as_array(mask, "mask") != 0
    idx = np.nonzero(arr)
    if idx[0].size == 0:
        return BoundingBox.empty(arr.ndim)
    return BoundingBox(
        ndim=arr.ndim,
        min_index=tuple(int(i.min()) for i in idx),
        max_index=tuple(int(i.max()) for i in idx),
    )


def bounding_box(
    cam: np.ndarray | torch.Tensor, fraction: float = 0.2, fully_connected: bool = False
) -> BoundingBox:
    """The CAM paper's box of one map: around the largest component above ``fraction`` of the max.

    Args:
        cam: ``(H, W)`` slice or ``(X, Y, Z)`` volume map.
        fraction: threshold as a share of the map's maximum (0.2 in the paper).
        fully_connected: see :func:`cam_segmentation`.

    Returns:
        A :class:`BoundingBox` with inclusive voxel indices; :meth:`BoundingBox.empty` with an
        :class:`EmptyCAMWarning` for a map with no positive value.

    Raises:
        InputError: see :func:`cam_segmentation`.
    """
    return box_of_mask(cam_segmentation(cam, fraction, fully_connected))


def bounding_boxes(
    maps: np.ndarray | torch.Tensor, fraction: float = 0.2, fully_connected: bool = False
) -> list[list[BoundingBox]]:
    """One box per map of a batch, e.g. ``CAMOutput.maps``.

    Args:
        maps: ``(B, n_maps, H, W)`` (2D, one box per slice) or ``(B, n_maps, X, Y, Z)`` (3D).
        fraction, fully_connected: see :func:`bounding_box`.

    Returns:
        ``boxes[b][n]`` for sample ``b`` and map ``n``.
    """
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    maps = np.asarray(maps)
    if maps.ndim not in (4, 5):
        raise InputError(
            f"expected maps of shape (B, n_maps, *spatial) with 2 or 3 spatial dims, got {maps.shape}"
        )
    return [[bounding_box(m, fraction, fully_connected) for m in sample] for sample in maps]


def box_to_world(
    box: BoundingBox, affine: np.ndarray | torch.Tensor, edges: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corners of a box in world millimetres (RAS for a nibabel affine).

    Args:
        box: a box of voxel indices in the array order of the image the affine belongs to.
        affine: ``(ndim + 1, ndim + 1)`` voxel-to-world matrix (``(4, 4)`` for a volume).
        edges: use the outer faces of the extreme voxels (index - 0.5 and + 0.5) instead of their
            centres.

    Returns:
        ``(corners_mm, min_mm, max_mm)``: ``corners_mm`` ``(2**ndim, ndim)``, every combination of
        the min/max index per axis in ``itertools.product`` order (first: all min, last: all max);
        ``min_mm``/``max_mm`` ``(ndim,)`` the world-axis-aligned extent of those corners. An empty
        box gives arrays of the same shapes filled with NaN.

    Raises:
        InputError: the affine's shape does not fit the box's dimensions.
    """
    aff = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=float)
    n = box.ndim
    if aff.shape != (n + 1, n + 1):
        raise InputError(f"a {n}D box needs a ({n + 1}, {n + 1}) affine, got shape {aff.shape}")
    if box.is_empty:
        nan = np.full(n, np.nan)
        return np.full((2**n, n), np.nan), nan, nan.copy()
    pad = 0.5 if edges else 0.0
    ends = [(lo - pad, hi + pad) for lo, hi in zip(box.min_index, box.max_index, strict=True)]
    corners_vox = np.array(list(itertools.product(*ends)), dtype=float)
    corners = corners_vox @ aff[:n, :n].T + aff[:n, n]
    return corners, corners.min(0), corners.max(0)
