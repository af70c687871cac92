"""2.5D slicing of a 3D volume along its voxel axes, and stacking 2D maps back into the 3D grid.

A volume ``(1, X, Y, Z)`` is cut along each requested voxel axis. Slices keep the voxel order of the
volume, with no transposes or flips, so that putting a 2D map back is plain indexing:

====  ==================  ================
axis  slice ``(1, H, W)``  voxel of (h, w)
====  ==================  ================
0     ``(1, Y, Z)``       ``(index, h, w)``
1     ``(1, X, Z)``       ``(h, index, w)``
2     ``(1, X, Y)``       ``(h, w, index)``
====  ==================  ================

Each slice is a ``MetaTensor`` whose 4x4 affine maps ``(h, w, 0)`` to the world millimetres of its
source voxel (the third column is the through-plane direction).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = [
    "SELECTIONS",
    "Slices25D",
    "Slices25Dd",
    "slice_indices",
    "trained_slices",
    "stack_slices",
    "slice_affine",
]

SELECTIONS = ("centre", "mask")
#: dictionary keys each slice item carries besides the image (and mask)
SLICE_META_KEYS = ("subject", "acquisition", "axis", "index", "source_affine", "source_shape")


def _as_numpy_3d(x: Any, name: str) -> np.ndarray:
    """A ``(X, Y, Z)`` or ``(1, X, Y, Z)`` array or tensor as a ``(X, Y, Z)`` numpy array."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (X, Y, Z) or (1, X, Y, Z), got shape {tuple(a.shape)}")
    return a


def slice_indices(
    shape: Sequence[int],
    mask: np.ndarray | torch.Tensor | None,
    axis: int,
    selection: str = "centre",
    k: int = 16,
    stride: int = 1,
    min_brain_fraction: float = 0.0,
) -> list[int]:
    """The slice indices along ``axis`` that :class:`Slices25D` takes (the range a network is trained on).

    Args:
        shape: spatial shape ``(X, Y, Z)`` of the volume.
        mask: brain mask ``(X, Y, Z)`` or ``(1, X, Y, Z)`` (nonzero = brain), or ``None``.
        axis: voxel axis to slice along, 0, 1 or 2.
        selection: ``"centre"``: ``k`` slices, ``stride`` apart, centred on the middle of the mask's
            bounding box along ``axis`` (of the volume if there is no mask; a tie goes to the lower
            slices), shifted to stay inside
            the volume; every ``stride``-th slice if that span covers the volume. ``"mask"``: every ``stride``-th
            slice (from the first) among those whose share of brain voxels is at least
            ``min_brain_fraction`` and that hold at least one brain voxel (every slice if no mask).
        k: number of centre slices.
        stride: step between selected slices (>= 1).
        min_brain_fraction: for ``"mask"``, the least share of the slice area inside the mask, in [0, 1].

    Returns:
        sorted slice indices along ``axis``.

    Raises:
        ValueError: unknown ``selection``, ``axis`` out of range, ``k``/``stride`` < 1, or a mask whose
            shape differs from ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (X, Y, Z), got {shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if k < 1 or stride < 1:
        raise ValueError(f"k and stride must be >= 1, got k={k}, stride={stride}")
    if not 0.0 <= min_brain_fraction <= 1.0:
        raise ValueError(f"min_brain_fraction must be in [0, 1], got {min_brain_fraction}")
    m = None
    if mask is not None:
        m = _as_numpy_3d(mask, "mask") != 0
        if m.shape != shape:
            raise ValueError(f"mask shape {m.shape} differs from the volume shape {shape}")
    size = shape[axis]
    other = tuple(a for a in range(3) if a != axis)
    if selection == "mask":
        if m is None:
            candidates = list(range(size))
        else:
            counts = m.sum(axis=other)
            area = shape[other[0]] * shape[other[1]]
            keep = (counts > 0) & (counts >= min_brain_fraction * area)
            candidates = np.flatnonzero(keep).tolist()
        return candidates[::stride]
    # centre: middle of the brain's extent along the axis, or of the volume
    if m is not None and m.any():
        present = np.flatnonzero(m.any(axis=other))
        centre = (int(present[0]) + int(present[-1])) / 2.0
    else:
        centre = (size - 1) / 2.0
    span = (k - 1) * stride + 1
    if span >= size:
        return list(range(0, size, stride))
    # ties (an even span about a whole centre, an odd one about a half) go to the lower slices
    start = int(np.ceil(centre - (span - 1) / 2.0 - 0.5))
    start = min(max(start, 0), size - span)
    return list(range(start, start + span, stride))


def slice_affine(affine: np.ndarray | torch.Tensor, axis: int, index: int) -> np.ndarray:
    """4x4 affine of slice ``index`` along ``axis``: maps slice voxel ``(h, w, 0)`` to world mm.

    Args:
        affine: the volume's 4x4 voxel-to-world affine.
        axis: voxel axis cut through.
        index: slice position along ``axis``.

    Returns:
        float64 ``(4, 4)``: columns are the in-plane axes (in voxel order), then the cut axis.
    """
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    inplane = [i for i in range(3) if i != axis]
    out = np.eye(4)
    out[:3, 0] = a[:3, inplane[0]]
    out[:3, 1] = a[:3, inplane[1]]
    out[:3, 2] = a[:3, axis]
    out[:3, 3] = a[:3, 3] + index * a[:3, axis]
    return out


def _take(vol: torch.Tensor, axis: int, index: int) -> torch.Tensor:
    """``(C, H, W)`` slice of a ``(C, X, Y, Z)`` tensor, copied so it does not pin the volume."""
    return vol.select(axis + 1, index).clone()


class Slices25D(Transform):
    """Cut a ``(C, X, Y, Z)`` volume into 2D slices along voxel axes (2.5D).

    Args:
        selection: ``"centre"`` or ``"mask"``; see :func:`slice_indices`.
        k: number of centre slices per axis.
        stride: step between selected slices.
        axes: voxel axes to slice along.
        min_brain_fraction: least share of brain in a slice for ``"mask"`` selection.
    """

    def __init__(
        self,
        selection: str = "centre",
        k: int = 16,
        stride: int = 1,
        axes: Sequence[int] = (0, 1, 2),
        min_brain_fraction: float = 0.0,
    ) -> None:
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes}")
        self.selection = selection
        self.k = k
        self.stride = stride
        self.axes = tuple(int(a) for a in axes)
        self.min_brain_fraction = min_brain_fraction

    def positions(
        self, shape: Sequence[int], mask: torch.Tensor | np.ndarray | None = None
    ) -> list[tuple[int, int]]:
        """The ``(axis, index)`` pairs cut from a volume of spatial ``shape``, axis by axis."""
        return [
            (axis, i)
            for axis in self.axes
            for i in slice_indices(
                shape, mask, axis, self.selection, self.k, self.stride, self.min_brain_fraction
            )
        ]

    def __call__(
        self, img: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
    ) -> list[MetaTensor]:
        """Cut ``img``.

        Args:
            img: ``(C, X, Y, Z)`` volume (``MetaTensor`` to carry its affine; identity otherwise).
            mask: ``(X, Y, Z)`` or ``(1, X, Y, Z)`` brain mask used for the selection, or ``None``.

        Returns:
            float32 ``MetaTensor`` slices ``(C, H, W)`` (see the module table), each with ``meta``
            keys ``axis``, ``index``, ``source_affine`` (4x4 float64) and ``source_shape`` (X, Y, Z).

        Raises:
            ValueError: ``img`` is not 4D channel-first, or the mask does not fit it.
        """
        t = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
        if t.ndim != 4:
            raise ValueError(
                f"Slices25D expects a channel-first (C, X, Y, Z) volume, got shape {tuple(t.shape)}"
            )
        affine = t.affine if isinstance(t, MetaTensor) else torch.eye(4, dtype=torch.float64)
        affine = np.asarray(affine.detach().cpu(), dtype=np.float64)
        shape = tuple(int(s) for s in t.shape[1:])
        data = t.as_tensor() if isinstance(t, MetaTensor) else t
        out = []
        for axis, index in self.positions(shape, mask):
            meta = {
                "axis": axis,
                "index": index,
                "source_affine": affine.copy(),
                "source_shape": shape,
            }
            s = _take(data, axis, index).to(torch.float32)
            out.append(MetaTensor(s, affine=torch.as_tensor(slice_affine(affine, axis, index)), meta=meta))
        return out


class Slices25Dd(MapTransform):
    """Dictionary version of :class:`Slices25D`: one volume item in, a list of slice items out.

    Like ``RandCropByPosNegLabeld``, it returns a list of samples. Each output item holds:

    - ``image``: ``(C, H, W)`` float32 ``MetaTensor``, the ``keys`` concatenated along channels (one
      scalar map such as FA gives ``(1, H, W)``);
    - ``mask``: the matching ``(1, H, W)`` mask slice, if ``mask_key`` is in the input;
    - ``subject``, ``acquisition`` (from the input item, else from the first key's meta, else ``""``),
      ``axis``, ``index``, ``source_affine`` (4x4), ``source_shape`` ``(X, Y, Z)``;
    - every other input entry that is not a volume (``label``, paths, ...), passed through.

    Args:
        keys: the 3D ``(1, X, Y, Z)`` maps to slice (e.g. ``"fa"``).
        mask_key: key of the brain mask ``(1, X, Y, Z)``; used for selection and sliced alongside.
        selection, k, stride, axes, min_brain_fraction: see :class:`Slices25D`.
        image_key: output key of the sliced image.
        allow_missing_keys: skip missing ``keys``; an item without any of them is returned as is.
    """

    def __init__(
        self,
        keys: KeysCollection = "fa",
        mask_key: str | None = "mask",
        selection: str = "centre",
        k: int = 16,
        stride: int = 1,
        axes: Sequence[int] = (0, 1, 2),
        min_brain_fraction: float = 0.0,
        image_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.slicer = Slices25D(selection, k, stride, axes, min_brain_fraction)
        self.mask_key = mask_key
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if not present:
            return [d]
        vols = [
            d[k] if isinstance(d[k], torch.Tensor) else torch.as_tensor(np.asarray(d[k])) for k in present
        ]
        shape = tuple(vols[0].shape[1:])
        for key, v in zip(present, vols, strict=True):
            if v.ndim != 4 or tuple(v.shape[1:]) != shape:
                raise ValueError(
                    f"{type(self).__name__}: key '{key}' must be (C, X, Y, Z) with spatial shape {shape}, "
                    f"got {tuple(v.shape)}"
                )
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        if mask is not None:
            mask = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
            if mask.ndim == 3:
                mask = mask[None]
            if tuple(mask.shape) != (1, *shape):
                raise ValueError(
                    f"{type(self).__name__}: mask '{self.mask_key}' shape {tuple(mask.shape)} does not match "
                    f"the volume (1, {', '.join(map(str, shape))})"
                )
        meta0 = vols[0].meta if isinstance(vols[0], MetaTensor) else {}
        ident = {name: d.get(name, meta0.get(name, "")) for name in ("subject", "acquisition")}
        skip = {*present, self.mask_key}
        # pass through everything but volumes, so that items stay small and collatable
        passed = {
            k: v
            for k, v in d.items()
            if k not in skip and not (isinstance(v, (torch.Tensor, np.ndarray)) and np.ndim(v) >= 3)
        }
        per_key = [self.slicer(v, mask) for v in vols]
        mask_slices = self.slicer(mask.to(torch.float32), mask) if mask is not None else None
        out = []
        for j, first in enumerate(per_key[0]):
            item = dict(passed)
            item.update(ident)
            img = first if len(per_key) == 1 else torch.cat([p[j] for p in per_key], dim=0)
            item[self.image_key] = img
            if mask_slices is not None:
                item[self.mask_key] = mask_slices[j]
            for name in ("axis", "index", "source_affine", "source_shape"):
                item[name] = first.meta[name]
            out.append(item)
        return out


def trained_slices(
    shape: Sequence[int],
    mask: np.ndarray | torch.Tensor | None,
    selection: str = "centre",
    k: int = 16,
    axes: Sequence[int] = (0, 1, 2),
) -> dict[int, list[int]]:
    """Axis -> the slice indices a 2D network trained with this selection saw, for each of ``axes``.

    What CAM inference restricts itself to (``cam_volume(..., trained_indices=...)``): on slices a
    network never saw, it lights up rims of cortex. Arguments as in :func:`slice_indices`.
    """
    return {int(a): slice_indices(shape, mask, int(a), selection, k) for a in axes}


def stack_slices(
    maps: Sequence[torch.Tensor | np.ndarray],
    axis: int,
    indices: Sequence[int],
    shape: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put 2D maps back into the 3D voxel grid they were cut from (inverse of :class:`Slices25D`).

    Args:
        maps: one map per slice, ``(1, H, W)`` or ``(H, W)``, in the slice layout of the module table.
        axis: voxel axis the slices were cut along.
        indices: slice index of each map along ``axis``; a repeated index keeps the last map.
        shape: spatial shape ``(X, Y, Z)`` of the volume.

    Returns:
        ``(volume, covered)``: float32 ``(X, Y, Z)`` with the maps in place and 0 elsewhere, and bool
        ``(X, Y, Z)``, True on the voxels of the given slices.

    Raises:
        ValueError: ``maps`` and ``indices`` differ in length, an index is out of range, or a map's
            shape does not match the slice shape of ``shape`` along ``axis``.
    """
    shape = tuple(int(s) for s in shape)
    if axis not in (0, 1, 2) or len(shape) != 3:
        raise ValueError(f"need axis in (0, 1, 2) and a 3D shape, got axis={axis}, shape={shape}")
    if len(maps) != len(indices):
        raise ValueError(f"got {len(maps)} maps for {len(indices)} indices")
    plane = tuple(s for a, s in enumerate(shape) if a != axis)
    volume = torch.zeros(shape, dtype=torch.float32)
    covered = torch.zeros(shape, dtype=torch.bool)
    for m, i in zip(maps, indices, strict=True):
        t = torch.as_tensor(m.as_tensor() if isinstance(m, MetaTensor) else m).detach().cpu()
        if t.ndim == 3 and t.shape[0] == 1:
            t = t[0]
        if tuple(t.shape) != plane:
            raise ValueError(f"map of shape {tuple(t.shape)} does not fit a slice {plane} along axis {axis}")
        if not 0 <= int(i) < shape[axis]:
            raise ValueError(f"slice index {i} out of range [0, {shape[axis]}) along axis {axis}")
        volume.select(axis, int(i)).copy_(t.to(torch.float32))
        covered.select(axis, int(i)).fill_(True)
    return volume, covered
