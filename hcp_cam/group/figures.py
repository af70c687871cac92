"""``group_overview.png``: the group difference on the template, and every subject's registration."""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from hcp_cam.io import atomic_path

__all__ = ["group_overview"]


def _to_ras(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The volume with its axes reordered and flipped to RAS (display only; no resampling)."""
    ornt = nib.orientations.io_orientation(affine)
    return nib.orientations.apply_orientation(volume, ornt)


def _planes(volume: np.ndarray, peak: Sequence[int]) -> list[np.ndarray]:
    """Sagittal, coronal and axial planes through ``peak`` of a RAS volume, for ``imshow``: superior
    (or anterior) up, the subject's right on the right (neurological)."""
    i, j, k = (int(v) for v in peak)
    return [np.rot90(volume[i, :, :]), np.rot90(volume[:, j, :]), np.rot90(volume[:, :, k])]


def _edges(fa: np.ndarray, level: float) -> np.ndarray:
    """Edge voxels of a warped FA map: the boundary of the region above ``level``."""
    inside = np.nan_to_num(fa, nan=0.0) > level
    return inside & ~ndimage.binary_erosion(inside)


def group_overview(
    template: np.ndarray,
    affine: np.ndarray,
    maps: Sequence[tuple[str, np.ndarray, np.ndarray | None]],
    warped_fa: Sequence[np.ndarray],
    names: Sequence[str],
    flagged: Sequence[bool],
    out_path: str | os.PathLike,
    title: str = "",
) -> str:
    """Write the overview figure.

    Args:
        template: ``(X, Y, Z)`` template FA (the background).
        affine: its RAS affine (the plane labels give the peak in mm).
        maps: rows of ``(title, difference map, FWE p map or None)``; each row shows the difference
            on the template in three planes through the map's peak (largest magnitude), with a colour
            bar, where it exceeds a fifth of its largest magnitude; voxels with p < 0.05 are outlined.
        warped_fa: every subject's FA in template space, for the montage of edges over the template.
        names: the subjects' names in the montage.
        flagged: subjects whose registration QC failed (titled in red).
        out_path: the PNG, written atomically.
        title: the figure's title.

    Returns:
        the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(warped_fa)
    cols = min(8, max(1, n))
    montage_rows = int(np.ceil(n / cols)) if n else 0
    fig = plt.figure(figsize=(12, 3.4 * len(maps) + 1.6 * montage_rows + 0.6))
    heights = [3.4] * len(maps) + [1.6] * montage_rows
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.35)
    background = _to_ras(np.nan_to_num(template, nan=0.0), affine)
    vmax_bg = 1.3 * float(np.percentile(background[background > 0], 99)) if (background > 0).any() else 1.0
    for r, (label, diff_native, p_native) in enumerate(maps):
        sub = grid[r].subgridspec(1, 4, width_ratios=[1, 1, 1, 0.06], wspace=0.08)
        finite_native = np.isfinite(diff_native)
        peak_native = (
            np.unravel_index(
                int(np.argmax(np.where(finite_native, np.abs(diff_native), -np.inf))), diff_native.shape
            )
            if finite_native.any()
            else tuple(s // 2 for s in diff_native.shape)
        )
        mm = affine[:3, :3] @ np.asarray(peak_native) + affine[:3, 3]
        marker = np.zeros(diff_native.shape, dtype=np.int8)
        marker[tuple(peak_native)] = 1
        peak = np.argwhere(_to_ras(marker, affine))[0]
        diff = _to_ras(diff_native, affine)
        p = _to_ras(p_native, affine) if p_native is not None else np.ones_like(diff)
        limit = float(np.nanmax(np.abs(diff))) if finite_native.any() else 1.0
        shown = np.where(np.abs(np.nan_to_num(diff)) >= 0.2 * limit, diff, np.nan)
        image = None
        for c, (bg, ov, pp) in enumerate(
            zip(_planes(background, peak), _planes(shown, peak), _planes(p, peak), strict=True)
        ):
            ax = fig.add_subplot(sub[0, c])
            ax.imshow(bg, cmap="gray", vmin=0, vmax=vmax_bg, interpolation="nearest")
            image = ax.imshow(
                np.ma.masked_invalid(ov),
                cmap="RdBu_r",
                vmin=-limit,
                vmax=limit,
                alpha=0.85,
                interpolation="nearest",
            )
            if c > 0:  # coronal and axial: the subject's left and right
                ax.text(0.01, 0.5, "L", transform=ax.transAxes, color="white", fontsize=8, va="center")
                ax.text(
                    0.99, 0.5, "R", transform=ax.transAxes, color="white", fontsize=8, va="center", ha="right"
                )
            if (np.nan_to_num(pp, nan=1.0) < 0.05).any():
                ax.contour(np.nan_to_num(pp, nan=1.0) < 0.05, levels=[0.5], colors="yellow", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                ("sagittal", "coronal", "axial")[c] + (f"  {label}" if c == 0 else ""), fontsize=9, loc="left"
            )
        fig.axes[-1].text(
            1.0, -0.08, f"peak voxel {tuple(int(v) for v in peak_native)} = ({mm[0]:.1f}, {mm[1]:.1f}, {mm[2]:.1f}) mm RAS",
            transform=fig.axes[-1].transAxes, ha="right", va="top", fontsize=7,
        )  # fmt: skip
        cax = fig.add_subplot(sub[0, 3])
        fig.colorbar(image, cax=cax)
    if n:
        centre = tuple(s // 2 for s in background.shape)
        sub = grid[len(maps) :, 0].subgridspec(montage_rows, cols, wspace=0.05, hspace=0.25)
        level = 0.5 * float(np.percentile(background[background > 0], 50)) if (background > 0).any() else 0.1
        for s, (fa, name, bad) in enumerate(zip(warped_fa, names, flagged, strict=True)):
            ax = fig.add_subplot(sub[s // cols, s % cols])
            ax.imshow(
                np.rot90(background[:, :, centre[2]]),
                cmap="gray",
                vmin=0,
                vmax=vmax_bg,
                interpolation="nearest",
            )
            edge = np.rot90(_edges(_to_ras(fa, affine), level)[:, :, centre[2]])
            ax.imshow(np.ma.masked_where(~edge, edge), cmap="autumn", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=7, color="red" if bad else "black")
    if title:
        fig.suptitle(title, fontsize=11)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(out_path)
