"""How well a class activation map points at a known region, and whether it depends on the weights.

Scores for one map ``cam`` and one ground-truth region ``roi`` of the same shape (``(H, W)`` or
``(X, Y, Z)``), e.g. the planted effect region of the synthetic data:

- :func:`pointing_game`: the map's maximum lies in the region (Zhang et al., ECCV 2016).
- :func:`energy_pointing_game`: the share of the map's positive mass inside the region
  (Wang et al., Score-CAM, CVPR-W 2020).
- :func:`iou`, :func:`dice`: overlap of the region with the map's segmentation, the same one the
  box is drawn around (:func:`hcp_cam.cam.bbox.cam_segmentation`: largest connected component
  above ``fraction`` of the maximum).
- :func:`box_iou_with_roi`: overlap of the map's box with the box around the whole region.

:func:`randomization_check` is the model-randomisation sanity check of Adebayo et al. (NeurIPS
2018): maps that barely change when the weights are re-initialised do not explain the network.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from scipy.stats import spearmanr

from hcp_cam.cam.bbox import BoundingBox, EmptyCAMWarning, bounding_box, box_of_mask, cam_segmentation
from hcp_cam.cam.inferer import CAMInferer
from hcp_cam.errors import ConfigError, InputError
from hcp_cam.io import atomic_path

__all__ = [
    "box_iou",
    "box_iou_with_roi",
    "dice",
    "energy_pointing_game",
    "iou",
    "localization_scores",
    "map_rank_correlation",
    "pointing_game",
    "randomization_check",
    "scores_table",
    "write_scores_csv",
    "write_scores_markdown",
]

Array = np.ndarray | torch.Tensor


def _numpy(a: Array) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _pair(cam: Array, roi: Array) -> tuple[np.ndarray, np.ndarray]:
    """Check a map and a region against each other: same 2D/3D shape, finite map, non-empty region."""
    c, r = _numpy(cam), _numpy(roi)
    if c.ndim not in (2, 3):
        raise InputError(f"expected a 2D slice or 3D volume map, got shape {c.shape}")
    if c.shape != r.shape:
        raise InputError(f"map shape {c.shape} differs from region shape {r.shape}")
    if not np.isfinite(c).all():
        raise InputError(f"map of shape {c.shape} holds NaN or Inf values")
    r = r != 0
    if not r.any():
        raise InputError(f"region of shape {r.shape} is empty: no score is defined")
    return c, r


def pointing_game(cam: Array, roi: Array) -> bool:
    """Whether the map's maximum falls inside the region.

    The maximum is ``argmax`` of the flattened map, the first maximal voxel in C order: with ties,
    only that voxel counts (not "any maximal voxel").

    Args:
        cam: ``(H, W)`` or ``(X, Y, Z)`` map.
        roi: region of the same shape; non-zero voxels are inside.

    Raises:
        InputError: shapes differ, the map is not finite, or the region is empty.
    """
    c, r = _pair(cam, roi)
    return bool(r.flat[int(np.argmax(c))])


def energy_pointing_game(cam: Array, roi: Array) -> float:
    """Share of the map's positive mass inside the region: ``sum(relu(cam)[roi]) / sum(relu(cam))``.

    Returns:
        A value in ``[0, 1]``; NaN with an :class:`EmptyCAMWarning` for a map with no positive value.

    Raises:
        InputError: see :func:`pointing_game`.
    """
    c, r = _pair(cam, roi)
    pos = np.clip(c.astype(np.float64), 0.0, None)
    total = pos.sum()
    if total <= 0.0:
        warnings.warn(
            f"map of shape {c.shape} has no positive value: energy share is NaN",
            EmptyCAMWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(pos[r].sum() / total)


def _overlap(cam: Array, roi: Array, fraction: float, fully_connected: bool) -> tuple[int, int, int]:
    c, r = _pair(cam, roi)
    seg = cam_segmentation(c, fraction, fully_connected)
    return int((seg & r).sum()), int(seg.sum()), int(r.sum())


def iou(cam: Array, roi: Array, fraction: float = 0.2, fully_connected: bool = False) -> float:
    """Intersection over union of the region and the map's segmentation.

    The segmentation is the box's: the largest connected component of ``cam >= fraction * max``
    (:func:`hcp_cam.cam.bbox.cam_segmentation`), not every voxel above the threshold.

    Returns:
        ``|S & R| / |S | R|`` in ``[0, 1]``; 0 for a map with no positive value (with a warning).
    """
    inter, n_seg, n_roi = _overlap(cam, roi, fraction, fully_connected)
    return inter / (n_seg + n_roi - inter)


def dice(cam: Array, roi: Array, fraction: float = 0.2, fully_connected: bool = False) -> float:
    """Dice coefficient ``2 |S & R| / (|S| + |R|)`` of the region and the segmentation of :func:`iou`."""
    inter, n_seg, n_roi = _overlap(cam, roi, fraction, fully_connected)
    return 2.0 * inter / (n_seg + n_roi)


def box_iou(box_a: BoundingBox, box_b: BoundingBox) -> float:
    """Intersection over union of two boxes of inclusive voxel indices (2D or 3D).

    Returns:
        A value in ``[0, 1]``; 0 when either box is empty.

    Raises:
        InputError: the boxes have different numbers of dimensions.
    """
    if box_a.ndim != box_b.ndim:
        raise InputError(f"cannot compare a {box_a.ndim}D box with a {box_b.ndim}D box")
    if box_a.is_empty or box_b.is_empty:
        return 0.0
    sides = [
        max(0, min(ha, hb) - max(la, lb) + 1)
        for la, ha, lb, hb in zip(
            box_a.min_index, box_a.max_index, box_b.min_index, box_b.max_index, strict=True
        )
    ]
    inter = int(np.prod(sides))
    return inter / (box_a.n_voxels + box_b.n_voxels - inter)


def box_iou_with_roi(cam: Array, roi: Array, fraction: float = 0.2, fully_connected: bool = False) -> float:
    """IoU of the map's box (:func:`~hcp_cam.cam.bbox.bounding_box`) and the box around every region voxel."""
    c, r = _pair(cam, roi)
    return box_iou(bounding_box(c, fraction, fully_connected), box_of_mask(r))


def peak_distance(cam: Array, roi: Array, spacing: Sequence[float] | None = None) -> float:
    """Distance from the map's peak (first maximum in C order) to the nearest voxel of the region.

    0 when the peak lies inside the region (a pointing-game hit). A graded companion of the
    pointing game, whose hit/miss says nothing about a peak one voxel off a thin region.

    Args:
        cam, roi: map and region of one shape.
        spacing: voxel size per axis (mm); ``None`` gives voxels.

    Returns:
        the Euclidean distance in the units of ``spacing``.

    Raises:
        InputError: shapes differ, or the region is empty.
    """
    from scipy import ndimage

    c, r = _pair(cam, roi)
    dist = ndimage.distance_transform_edt(~r, sampling=None if spacing is None else list(spacing))
    return float(dist[np.unravel_index(int(np.argmax(c)), c.shape)])


def localization_scores(
    cam: Array,
    roi: Array,
    fraction: float = 0.2,
    fully_connected: bool = False,
    spacing: Sequence[float] | None = None,
) -> dict:
    """Every score of this module for one map and one region.

    Args:
        spacing: voxel size (mm) for ``peak_distance``; ``None`` gives it in voxels.

    Returns:
        ``{"pointing_game": bool, "energy_pointing_game", "iou", "dice", "box_iou",
        "peak_distance": float, "fraction": float, "cam_box": dict, "roi_voxels": int}``;
        ``cam_box`` is :meth:`BoundingBox.to_dict` of the map's box.
    """
    c, r = _pair(cam, roi)
    with warnings.catch_warnings(record=True) as caught:  # one warning per map, not one per score
        warnings.simplefilter("always", EmptyCAMWarning)
        box = bounding_box(c, fraction, fully_connected)
        scores = {
            "pointing_game": pointing_game(c, r),
            "energy_pointing_game": energy_pointing_game(c, r),
            "iou": iou(c, r, fraction, fully_connected),
            "dice": dice(c, r, fraction, fully_connected),
            "box_iou": box_iou(box, box_of_mask(r)),
            "peak_distance": peak_distance(c, r, spacing),
        }
    if caught:
        warnings.warn(str(caught[0].message), caught[0].category, stacklevel=2)
    return {**scores, "fraction": float(fraction), "cam_box": box.to_dict(), "roi_voxels": int(r.sum())}


def map_rank_correlation(maps_a: Array, maps_b: Array) -> float:
    """Mean Spearman rank correlation between matching maps of two ``(B, n, *spatial)`` batches.

    Each map ``[b, n]`` is correlated with its counterpart over its voxels. A constant map has no
    ranks: against a varying map it counts as 0 (no agreement, e.g. a Grad-CAM that ReLU zeroed
    everywhere), and a pair of constant maps is left out of the mean.

    Returns:
        A value in ``[-1, 1]``; NaN (with a warning) when every map pair is constant.
    """
    a, b = _numpy(maps_a).astype(np.float64), _numpy(maps_b).astype(np.float64)
    if a.shape != b.shape or a.ndim < 3:
        raise InputError(
            f"map batches must have the same (B, n, *spatial) shape, got {a.shape} and {b.shape}"
        )
    rhos = []
    for x, y in zip(
        a.reshape(-1, int(np.prod(a.shape[2:]))), b.reshape(-1, int(np.prod(b.shape[2:]))), strict=True
    ):
        varies = (np.ptp(x) > 0, np.ptp(y) > 0)
        if all(varies):
            rhos.append(spearmanr(x, y).statistic)
        elif any(varies):
            rhos.append(0.0)
    if not rhos:
        warnings.warn(
            "every map pair has a constant map: rank correlation is NaN", EmptyCAMWarning, stacklevel=2
        )
        return float("nan")
    return float(np.mean(rhos))


def randomization_check(
    network: nn.Module,
    inputs: torch.Tensor,
    inferer: CAMInferer,
    seed: int = 0,
    layers: Sequence[str] | None = None,
) -> float:
    """Model-randomisation sanity check: rank correlation of the maps before and after re-initialising.

    A deep copy of ``network`` gets fresh weights (each module's ``reset_parameters``, PyTorch's
    default initialisation, drawn from ``seed`` without touching the global random state); both
    networks then map the same ``inputs`` for the same classes (the trained network's targets).
    Maps that explain the trained network should change: a weak correlation passes the check.

    Args:
        network: the trained network (left unchanged).
        inputs: ``(B, C, *spatial)`` batch.
        inferer: the :class:`CAMInferer` under test (any method).
        seed: seed of the new weights.
        layers: names of the modules to re-initialise with everything under them (e.g. the top
            layers, for a cascading check); ``None`` re-initialises every layer, ``()`` none.

    Returns:
        Mean Spearman correlation over the ``(B, n_maps)`` maps (:func:`map_rank_correlation`).

    Raises:
        ConfigError: a name in ``layers`` is not a module of the network.
    """
    trained = inferer(inputs, network)
    randomised = copy.deepcopy(network)
    names = [n for n, _ in randomised.named_modules()]
    if layers is not None:
        missing = [layer for layer in layers if layer not in names]
        if missing:
            raise ConfigError(f"{type(network).__name__} has no layer(s) {missing}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in randomised.named_modules():
            chosen = layers is None or any(name == p or name.startswith(p + ".") for p in layers)
            if chosen and callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    # the same classes as the trained maps ("all"/"difference" give the same ones anyway)
    same = trained.class_idx if trained.class_idx.ndim == 1 else None
    other = inferer(inputs, randomised, class_idx=same)
    return map_rank_correlation(trained.maps, other.maps)


def scores_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per map: identifiers (subject, axis, ...) and :func:`localization_scores`.

    Nested dictionaries (``cam_box``) are flattened to ``cam_box.min_index`` style columns.
    """
    return pd.json_normalize([dict(r) for r in rows])


def write_scores_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the table as CSV (no index), atomically; returns the path."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def write_scores_markdown(table: pd.DataFrame, path: str | os.PathLike, float_format: str = "{:.3f}") -> Path:
    """Write the table as a GitHub Markdown table, atomically; floats as ``float_format``."""

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating) and not isinstance(v, bool):
            return float_format.format(v)
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(c) for c in table.columns) + " |",
        "|" + "|".join(" --- " for _ in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)
