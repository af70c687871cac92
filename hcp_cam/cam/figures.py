"""CAM figures as PNG: orthogonal planes through the CAM peak over the FA map.

Display convention (every figure here): volumes are first reoriented to RAS with
:mod:`nibabel.orientations` when an ``affine`` is given (an LAS or PSR image then looks the same as
its RAS twin); without one the array axes are taken as already RAS. Each plane is drawn with
``imshow(plane.T, origin="lower")`` in **neurological** convention, the subject's right on the
image's right:

- sagittal (fixed x): horizontal = posterior -> anterior, vertical = inferior -> superior;
- coronal (fixed y): horizontal = left -> right, vertical = inferior -> superior;
- axial (fixed z): horizontal = left -> right, vertical = posterior -> anterior (anterior up).

Pixels keep the voxel aspect ratio. The FA map is grey, the CAM a heat map (``"hot"``, its
opacity rising with the value) with a colour bar, the peak a cyan cross, and a bounding box, when
given, is outlined in green on every plane that cuts it. The planes used are stored in the PNG's
``hcp_cam_planes`` text chunk as input voxel indices ``"i,j,k"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from hcp_cam.errors import InputError
from hcp_cam.figure_io import save_figure

__all__ = ["peak_planes", "to_ras", "orthogonal_overlay", "network_comparison_figure", "cohort_figure"]

PLANES = ("sagittal", "coronal", "axial")
# per plane: (axis held fixed, horizontal axis, vertical axis, (left, right, bottom, top) letters)
_LAYOUT = ((0, 1, 2, "PAIS"), (1, 0, 2, "LRIS"), (2, 0, 1, "LRPA"))

Box = Sequence[Sequence[int]] | Sequence[int] | np.ndarray


def _volume(x, name: str) -> np.ndarray:
    """(X, Y, Z) or (1, X, Y, Z) array or tensor -> (X, Y, Z) float64."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise InputError(f"{name} must be a 3D volume (X, Y, Z) or (1, X, Y, Z), got shape {a.shape}")
    return a


def peak_planes(cam) -> tuple[int, int, int]:
    """Voxel ``(i, j, k)`` of the CAM maximum: the sagittal, coronal and axial planes to show.

    Args:
        cam: ``(X, Y, Z)`` or ``(1, X, Y, Z)``; NaN (unknown voxels) is ignored. Ties go to the first
            voxel in C order.

    Raises:
        InputError: not 3D, or no finite value.
    """
    a = _volume(cam, "cam")
    if not np.isfinite(a).any():
        raise InputError("cam has no finite value: no peak to show")
    flat = np.where(np.isfinite(a), a, -np.inf).argmax()
    return tuple(int(v) for v in np.unravel_index(flat, a.shape))


def to_ras(affine: np.ndarray | None, shape: Sequence[int]):
    """How to show voxel data of ``shape`` in RAS order.

    Args:
        affine: ``(4, 4)`` voxel-to-world (RAS mm) affine, or ``None`` (the array is already RAS).
        shape: ``(X, Y, Z)``.

    Returns:
        ``(reorient, index, zooms)``: ``reorient(volume)`` gives the RAS-ordered array,
        ``index((i, j, k))`` maps a voxel of the input to the RAS-ordered array, and ``zooms`` the
        voxel sizes (mm) along the RAS-ordered axes (ones without an affine).
    """
    shape = tuple(int(s) for s in shape)
    if affine is None:
        return (lambda v: v), (lambda ijk: tuple(int(x) for x in ijk)), np.ones(3)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"affine must be a finite (4, 4) matrix, got shape {affine.shape}")
    xform = ornt_transform(io_orientation(affine), axcodes2ornt("RAS"))
    in_zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    zooms = np.empty(3)
    zooms[xform[:, 0].astype(int)] = in_zooms

    def index(ijk):
        out = [0, 0, 0]
        for axis, (new_axis, flip) in enumerate(xform):
            v = int(ijk[axis])
            out[int(new_axis)] = v if flip > 0 else shape[axis] - 1 - v
        return tuple(out)

    return (lambda v: apply_orientation(v, xform)), index, zooms


def _box_corners(box: Box | None, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """``[[x0, y0, z0], [x1, y1, z1]]`` or MONAI's ``(x0, y0, z0, x1, y1, z1)``, inclusive voxels."""
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.size != 6 or not np.isfinite(b).all():
        raise InputError(f"box must be [[x0, y0, z0], [x1, y1, z1]] (inclusive voxels), got {box!r}")
    lo, hi = np.rint(b[:3]).astype(int), np.rint(b[3:]).astype(int)
    if (lo > hi).any() or (lo < 0).any() or (hi >= np.asarray(shape)).any():
        raise InputError(f"box {lo.tolist()}..{hi.tolist()} is empty or outside the volume {tuple(shape)}")
    return lo, hi


class _Display:
    """FA, CAM and box of one volume, reoriented to RAS for drawing."""

    def __init__(self, background, affine, box, cam_shape):
        self.bg = _volume(background, "background")
        if self.bg.shape != tuple(cam_shape):
            raise InputError(f"background shape {self.bg.shape} differs from the CAM's {tuple(cam_shape)}")
        self.affine = None if affine is None else np.asarray(affine, dtype=np.float64)
        self.reorient, self.index, self.zooms = to_ras(self.affine, self.bg.shape)
        self.bg_ras = self.reorient(self.bg)
        finite = self.bg[np.isfinite(self.bg)]
        top = float(np.percentile(finite, 99.5)) if finite.size else 1.0
        self.bg_range = (0.0, top if top > 0 else 1.0)
        corners = _box_corners(box, self.bg.shape)
        self.box = None
        if corners is not None:
            a, b = np.asarray(self.index(corners[0])), np.asarray(self.index(corners[1]))
            self.box = (np.minimum(a, b), np.maximum(a, b))

    def plane_text(self, ijk, ras_axis: int) -> str:
        """Where a plane through input voxel ``ijk`` lies: world mm along ``ras_axis`` with an affine
        (what viewers show, whatever the storage order), else the voxel index."""
        if self.affine is None:
            return f"{'xyz'[ras_axis]}={int(ijk[ras_axis])}"
        xyz = self.affine @ np.r_[np.asarray(ijk, dtype=np.float64), 1.0]
        return f"{'xyz'[ras_axis]}={xyz[ras_axis]:.0f} mm"

    def where(self, ijk) -> str:
        """The peak as text: world mm with an affine (orientation-independent), else voxel."""
        if self.affine is None:
            return f"voxel ({ijk[0]}, {ijk[1]}, {ijk[2]})"
        xyz = self.affine @ np.r_[np.asarray(ijk, dtype=np.float64), 1.0]
        return f"({xyz[0]:.0f}, {xyz[1]:.0f}, {xyz[2]:.0f}) mm"


def _draw_row(axes, disp: _Display, cam: np.ndarray, ijk, vmin, vmax, cmap, alpha, threshold, label=""):
    """Three planes through input voxel ``ijk``; returns the CAM image for the colour bar."""
    cam_ras = disp.reorient(cam)
    shown = np.ma.masked_invalid(cam_ras)
    if threshold is not None:
        shown = np.ma.masked_less(shown, threshold)
    point = disp.index(ijk)
    im = None
    for ax, name, (fixed, h, v, letters) in zip(axes, PLANES, _LAYOUT, strict=True):
        take = [slice(None)] * 3
        take[fixed] = point[fixed]
        aspect = disp.zooms[v] / disp.zooms[h]
        ax.imshow(
            disp.bg_ras[tuple(take)].T,
            cmap="gray",
            origin="lower",
            vmin=disp.bg_range[0],
            vmax=disp.bg_range[1],
            aspect=aspect,
            interpolation="nearest",
        )
        plane = shown[tuple(take)].T
        # opacity grows with the CAM value so that low values do not darken the FA under them
        opacity = alpha * np.sqrt(np.clip((plane.filled(vmin) - vmin) / (vmax - vmin), 0.0, 1.0))
        im = ax.imshow(
            plane,
            cmap=cmap,
            origin="lower",
            vmin=vmin,
            vmax=vmax,
            alpha=opacity,
            aspect=aspect,
            interpolation="nearest",
        )
        ax.plot(point[h], point[v], "+", color="cyan", ms=10, mew=1.5)
        if disp.box is not None and disp.box[0][fixed] <= point[fixed] <= disp.box[1][fixed]:
            lo, hi = disp.box
            ax.add_patch(
                Rectangle(
                    (lo[h] - 0.5, lo[v] - 0.5),
                    hi[h] - lo[h] + 1,
                    hi[v] - lo[v] + 1,
                    fill=False,
                    edgecolor="lime",
                    lw=1.5,
                )
            )
        for x, y, text in (
            (0.02, 0.5, letters[0]),
            (0.98, 0.5, letters[1]),
            (0.5, 0.02, letters[2]),
            (0.5, 0.98, letters[3]),
        ):
            ax.text(x, y, text, transform=ax.transAxes, color="white", ha="center", va="center", fontsize=9)
        ax.set_title(f"{label}{name} {disp.plane_text(ijk, fixed)}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def _range(values: list[np.ndarray]) -> tuple[float, float]:
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _metadata(planes: Mapping[str, tuple[int, int, int]] | tuple[int, int, int]) -> dict[str, str]:
    """PNG text chunks: ``"i,j,k"`` for one set of planes, ``"name=i,j,k;..."`` for one per row."""
    if isinstance(planes, tuple):
        text = ",".join(map(str, planes))
    else:
        text = ";".join(f"{name}=" + ",".join(map(str, ijk)) for name, ijk in planes.items())
    return {"Software": "hcp-cam", "hcp_cam_planes": text}


def orthogonal_overlay(
    fa,
    cam,
    out_png: str | os.PathLike,
    box: Box | None = None,
    title: str = "",
    affine: np.ndarray | None = None,
    alpha: float = 0.5,
    cmap: str = "hot",
    threshold: float | None = None,
) -> Path:
    """Sagittal, coronal and axial planes through the CAM peak, CAM over FA, with a colour bar.

    Args:
        fa: ``(X, Y, Z)`` (or ``(1, X, Y, Z)``) FA map, the grey background.
        cam: CAM of the same shape, any units (shown as is; NaN = unknown, not drawn).
        out_png: output PNG, written atomically.
        box: inclusive voxel box ``[[x0, y0, z0], [x1, y1, z1]]`` (or MONAI's flat
            ``(x0, y0, z0, x1, y1, z1)``) in the input's voxel indices, outlined in green.
        title: figure title; the peak position is appended (mm with an affine, else voxel).
        affine: ``(4, 4)`` voxel-to-RAS affine; the volumes are reoriented to RAS for display.
            Defaults to ``cam.affine`` when ``cam`` is a MONAI ``MetaTensor``.
        alpha: CAM opacity at its maximum; a value v is drawn with opacity
            ``alpha * sqrt((v - min) / (max - min))``, so a low CAM leaves the FA visible.
        cmap: CAM colour map.
        threshold: CAM values below it are transparent (default: all drawn).

    Returns:
        ``out_png``; its ``hcp_cam_planes`` text chunk holds the peak voxel ``"i,j,k"``.

    Raises:
        InputError: shapes differ or are not 3D, the CAM has no finite value, a bad box or affine.
    """
    if affine is None and hasattr(cam, "affine"):
        affine = np.asarray(cam.affine)
    c = _volume(cam, "cam")
    ijk = peak_planes(c)
    disp = _Display(fa, affine, box, c.shape)
    fig = Figure(figsize=(13, 4.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    im = _draw_row(axes, disp, c, ijk, *_range([c]), cmap, alpha, threshold)
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="CAM")
    fig.suptitle(f"{title + ': ' if title else ''}CAM peak at {disp.where(ijk)}")
    return save_figure(fig, out_png, metadata=_metadata(ijk))


def network_comparison_figure(
    fa,
    cams: Mapping[str, np.ndarray],
    out_png: str | os.PathLike,
    affine: np.ndarray | None = None,
    box: Box | None = None,
    common_planes: bool = False,
    alpha: float = 0.5,
    cmap: str = "hot",
    title: str = "",
) -> Path:
    """One subject, several networks: a row of three planes per network, each with its colour bar.

    Args:
        fa: ``(X, Y, Z)`` FA map of the subject.
        cams: network name -> ``(X, Y, Z)`` CAM of that subject (scales differ between networks,
            so each row has its own colour bar).
        out_png: output PNG.
        affine, box, alpha, cmap: as in :func:`orthogonal_overlay`.
        common_planes: show every row through the peak of the first network's CAM (to compare
            the same planes) instead of through each network's own peak (the default).
        title: figure title.

    Returns:
        ``out_png``; its ``hcp_cam_planes`` chunk holds ``"name=i,j,k;..."`` per row.
    """
    if not cams:
        raise InputError("network_comparison_figure got no CAM")
    vols = {name: _volume(v, f"cam of {name!r}") for name, v in cams.items()}
    first = next(iter(vols.values()))
    for name, vol in vols.items():
        if vol.shape != first.shape:
            raise InputError(f"cam of {name!r} has shape {vol.shape}, the others {first.shape}")
    disp = _Display(fa, affine, box, first.shape)
    planes = {name: peak_planes(first if common_planes else v) for name, v in vols.items()}
    fig = Figure(figsize=(13, 0.6 + 4.0 * len(vols)), dpi=100, layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(vols), 3))
    for row, (name, vol) in enumerate(vols.items()):
        im = _draw_row(axes[row], disp, vol, planes[name], *_range([vol]), cmap, alpha, None, f"{name}: ")
        fig.colorbar(im, ax=list(axes[row]), shrink=0.85, label=f"CAM ({name})")
    where = "common planes" if common_planes else "planes through each network's peak"
    fig.suptitle(title or f"CAM by network ({where})")
    return save_figure(fig, out_png, metadata=_metadata(planes))


def cohort_figure(
    mean_cams: Mapping[str, np.ndarray],
    background,
    out_png: str | os.PathLike,
    affine: np.ndarray | None = None,
    box: Box | None = None,
    planes: Sequence[int] | None = None,
    alpha: float = 0.5,
    cmap: str = "hot",
    title: str = "",
) -> Path:
    """Mean CAM per group (e.g. age group) over a common background, on the same planes and scale.

    Args:
        mean_cams: group name -> ``(X, Y, Z)`` mean CAM in a common space.
        background: ``(X, Y, Z)`` background in that space (e.g. the mean FA).
        out_png: output PNG.
        affine, box, alpha, cmap: as in :func:`orthogonal_overlay`.
        planes: voxel ``(i, j, k)`` to show; default the peak of the groups' summed maps.
        title: figure title.

    Returns:
        ``out_png``; one row per group, one colour bar shared by all rows.
    """
    if not mean_cams:
        raise InputError("cohort_figure got no group")
    vols = {g: _volume(v, f"mean CAM of {g!r}") for g, v in mean_cams.items()}
    shape = next(iter(vols.values())).shape
    for g, v in vols.items():
        if v.shape != shape:
            raise InputError(f"mean CAM of {g!r} has shape {v.shape}, the others {shape}")
    disp = _Display(background, affine, box, shape)
    if planes is None:
        ijk = peak_planes(np.nansum(np.stack(list(vols.values())), axis=0))
    else:
        ijk = tuple(int(p) for p in planes)
        if len(ijk) != 3 or any(not 0 <= p < s for p, s in zip(ijk, shape, strict=True)):
            raise InputError(f"planes {planes!r} are not a voxel of the volume {shape}")
    vmin, vmax = _range(list(vols.values()))
    fig = Figure(figsize=(13, 0.6 + 4.0 * len(vols)), dpi=100, layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(vols), 3))
    for row, (g, vol) in enumerate(vols.items()):
        im = _draw_row(axes[row], disp, vol, ijk, vmin, vmax, cmap, alpha, None, f"{g}: ")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="mean CAM")
    fig.suptitle(title or f"mean CAM per group at {disp.where(ijk)}")
    return save_figure(fig, out_png, metadata=_metadata(ijk))
