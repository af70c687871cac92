"""Do two maps of one subject agree? Overlap of their top voxels and rank correlation, across runs.

For runs of one configuration over folds or seeds, and across networks, the maps of each subject
are compared pairwise on a grid they share: :func:`map_agreement` gives the Dice overlap of the
two maps' top-10% voxels and their Spearman correlation over the voxels either map knows.

Which grid: a subject's CAMs from runs on one dataset all lie in that subject's FA grid
(``<run>/cam/<subject>/<acquisition>_cam.nii.gz``, :func:`run_cam_maps`), so they are compared
there, exactly, without resampling. Maps on different grids (runs on differently resampled data)
must first be brought into one space: the group step writes every subject's map on the template
grid as ``<group out>/subjects/<subject>[_<acquisition>]_cam.nii.gz`` (:func:`group_cam_maps`
reads that layout), and :func:`pairwise_agreement` takes either mapping. A pair whose grids
differ is skipped with a warning, never resampled here.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from hcp_cam.errors import InputError

__all__ = [
    "TOP_FRACTION",
    "top_fraction_mask",
    "map_agreement",
    "run_cam_maps",
    "group_cam_maps",
    "pairwise_agreement",
]

logger = logging.getLogger(__name__)

#: share of the known voxels that count as a map's "top" voxels
TOP_FRACTION = 0.1

MapKey = tuple[str, str]
MapSource = str | os.PathLike | nib.Nifti1Image | np.ndarray


def top_fraction_mask(values: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Bool mask of the ``ceil(fraction * n)`` largest of ``n`` values (ties: the lower index first).

    Args:
        values: ``(n,)`` map values over the compared voxels.
        fraction: in (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    k = int(np.ceil(fraction * v.size))
    top = np.zeros(v.size, dtype=bool)
    top[np.argsort(-v, kind="stable")[:k]] = True
    return top


def map_agreement(
    a: np.ndarray, b: np.ndarray, domain: np.ndarray | None = None, fraction: float = TOP_FRACTION
) -> dict[str, float]:
    """Agreement of two maps on one grid.

    Args:
        a, b: maps of the same shape (e.g. ``(X, Y, Z)``).
        domain: bool mask of the voxels compared; default: where either map is nonzero (a written
            CAM is 0 where it is unknown, so two runs with the same settings compare the voxels both know).
        fraction: the top share whose overlap is scored.

    Returns:
        ``dice_top`` (Dice of the two top-``fraction`` sets, in [0, 1]; ``fraction`` itself is what
        two independent maps score on average), ``spearman`` (rank correlation over ``domain``; NaN
        if a map is constant there) and ``n_voxels``.

    Raises:
        InputError: the shapes differ or the domain is empty.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"maps on different grids: shapes {a.shape} and {b.shape}")
    dom = (a != 0) | (b != 0) if domain is None else np.asarray(domain, dtype=bool)
    if dom.shape != a.shape:
        raise InputError(f"domain shape {dom.shape} differs from the maps' {a.shape}")
    if not dom.any():
        raise InputError("no voxel to compare: both maps are 0 everywhere (or the domain is empty)")
    x, y = a[dom], b[dom]
    ta, tb = top_fraction_mask(x, fraction), top_fraction_mask(y, fraction)
    dice = 2.0 * float((ta & tb).sum()) / float(ta.sum() + tb.sum())
    rho = float(spearmanr(x, y).statistic) if np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")
    return {"dice_top": dice, "spearman": rho, "n_voxels": int(dom.sum())}


def run_cam_maps(run_dir: str | os.PathLike, splits: Iterable[str] | None = None) -> dict[MapKey, Path]:
    """``(subject, acquisition) -> <run>/cam/<subject>/<acquisition>_cam.nii.gz`` of a bundle run.

    Args:
        run_dir: the run folder (its ``cam/summary.csv`` lists the maps and their split).
        splits: keep only these splits (``None``: every map written).

    Returns:
        the existing map files; empty when the run has no CAM summary.
    """
    summary = Path(run_dir) / "cam" / "summary.csv"
    if not summary.is_file():
        return {}
    table = pd.read_csv(summary, dtype={"subject": str, "acquisition": str})
    if splits is not None and "split" in table:
        table = table[table["split"].isin(list(splits))]
    out = {}
    for r in table.itertuples():
        path = Path(run_dir) / "cam" / r.subject / f"{r.acquisition}_cam.nii.gz"
        if path.is_file():
            out[(r.subject, r.acquisition)] = path
    return out


def group_cam_maps(group_dir: str | os.PathLike) -> dict[MapKey, Path]:
    """The maps on the template grid written by the group step: ``<group_dir>/subjects/<subject>[_<acq>]_cam.nii.gz``.

    The subject is the name up to the first ``_`` (HCP subject ids have none); the acquisition is
    the rest, ``""`` when absent.
    """
    out = {}
    for path in sorted((Path(group_dir) / "subjects").glob("*_cam.nii.gz")):
        stem = path.name[: -len("_cam.nii.gz")]
        subject, _, acquisition = stem.partition("_")
        out[(subject, acquisition)] = path
    return out


def _load(src: MapSource) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(src, np.ndarray):
        return src, None
    img = src if isinstance(src, nib.Nifti1Image) else nib.load(os.fspath(src))
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine)


def pairwise_agreement(
    maps: Mapping[str, Mapping[MapKey, MapSource]],
    pairs: Iterable[tuple[str, str]] | None = None,
    fraction: float = TOP_FRACTION,
) -> pd.DataFrame:
    """Agreement of every subject's maps between pairs of runs.

    Args:
        maps: run name -> ``(subject, acquisition)`` -> a map (NIfTI path or image, or an array).
        pairs: which runs to compare; default every pair of ``maps``.
        fraction: the top share of :func:`map_agreement`.

    Returns:
        one row per run pair and map both runs have: ``run_a``, ``run_b``, ``subject``,
        ``acquisition``, ``dice_top``, ``spearman``, ``n_voxels``. Pairs whose maps lie on different
        grids (shape or affine) are left out, with a warning: bring them to the group step's
        template grid first (:func:`group_cam_maps`).
    """
    names = list(maps)
    todo = list(itertools.combinations(names, 2) if pairs is None else pairs)
    cache: dict[tuple[str, MapKey], tuple[np.ndarray, Any]] = {}

    def get(run: str, key: MapKey):
        if (run, key) not in cache:
            cache[(run, key)] = _load(maps[run][key])
        return cache[(run, key)]

    rows, skipped = [], 0
    for ra, rb in todo:
        for key in sorted(set(maps[ra]) & set(maps[rb])):
            (a, aff_a), (b, aff_b) = get(ra, key), get(rb, key)
            off_grid = a.shape != b.shape or (
                aff_a is not None and aff_b is not None and not np.allclose(aff_a, aff_b, atol=1e-4)
            )
            if off_grid:
                skipped += 1
                continue
            rows.append(
                {
                    "run_a": ra,
                    "run_b": rb,
                    "subject": key[0],
                    "acquisition": key[1],
                    **map_agreement(a, b, fraction=fraction),
                }
            )
    if skipped:
        logger.warning(
            "%d map pairs lie on different grids and were not compared: compare the group step's "
            "template-space maps (<group out>/subjects/*_cam.nii.gz) instead",
            skipped,
        )
    return pd.DataFrame(
        rows, columns=["run_a", "run_b", "subject", "acquisition", "dice_top", "spearman", "n_voxels"]
    )
