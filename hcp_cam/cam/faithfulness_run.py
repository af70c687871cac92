"""Deletion/insertion faithfulness of every map of a run's test subjects, written as files.

For each acquisition (the bundle's ``inference`` with ``cam_faithfulness true``), under
``<output_dir>/cam/``:

- ``faithfulness.csv``: one row per acquisition and map (``subject, acquisition, group, map,
  deletion_auc, insertion_auc``, then ``class``, the mapped class, and ``prob_original``, its
  subject-level probability on the intact volume);
- ``faithfulness_curves.csv``: the curve points (``curve`` deletion|insertion, ``fraction``,
  ``n_voxels``, ``probability``);
- ``faithfulness.png``: the mean curves per map, one row of panels per group.

The maps (:data:`MAPS`): the CAM, Grad-CAM and Grad-CAM++ of the mapped class at the run's
settings (trained slices, coverage), a seeded random map and the FA itself (high FA first), all
ranked over the voxels the written CAM knows (with ``cam_coverage all`` the block where the trained
slabs cross; with every slice computed, the whole brain). Voxels outside stay as they are.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.data import MetaTensor
from tqdm import tqdm

from hcp_cam.cam.faithfulness import (
    DEFAULT_STEPS,
    SubjectProbability,
    deletion_insertion_curves,
    emptied_volume,
    relevance_order,
)
from hcp_cam.cam.inferer import CAMInferer, has_cam_head
from hcp_cam.cam.pipeline import CAM_SLICES, resolve_cam_class
from hcp_cam.cam.volume import cam_volume
from hcp_cam.errors import ConfigError
from hcp_cam.figure_io import new_figure, save_figure
from hcp_cam.io import atomic_paths, load_nifti
from hcp_cam.transforms.slicing import slice_indices, trained_slices

__all__ = ["MAPS", "faithfulness_maps", "faithfulness_for_volume", "run_faithfulness", "plot_faithfulness"]

logger = logging.getLogger(__name__)

#: the maps compared, in table order: the three inferer methods, then the two baselines
MAPS = ("cam", "gradcam", "gradcampp", "random", "fa")
_COLUMNS = (
    "subject",
    "acquisition",
    "group",
    "map",
    "deletion_auc",
    "insertion_auc",
    "class",
    "prob_original",
)


def _volume_seed(seed: int, name: str) -> list[int]:
    """A seed for one acquisition: the run's seed and a stable hash of its name (not Python's ``hash``)."""
    return [int(seed), zlib.crc32(name.encode())]


def faithfulness_maps(
    fa: np.ndarray,
    brain: np.ndarray,
    affine: np.ndarray,
    network: torch.nn.Module,
    eval_transform: Any,
    class_idx: Any,
    trained: dict[int, list[int]] | None,
    coverage: str = "all",
    target_layer: str | None = None,
    seed: Sequence[int] = (0,),
    batch_size: int = 64,
) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """The maps of :data:`MAPS` for one volume, the voxels they are ranked over, and the mapped class.

    Returns:
        ``(maps, domain, class)``: name -> float ``(X, Y, Z)``; bool ``(X, Y, Z)``, the voxels the
        CAM knows; the class index whose probability the curves follow (class 1 for ``"difference"``).
    """
    fa_t = MetaTensor(
        torch.from_numpy(np.asarray(fa, dtype=np.float32))[None], affine=torch.as_tensor(affine)
    )
    mask = torch.from_numpy(np.asarray(brain, dtype=np.uint8))[None]
    maps: dict[str, np.ndarray] = {}
    domain, mapped = None, None
    for method in MAPS[:3]:
        if method == "cam" and not has_cam_head(network):
            continue
        inferer = CAMInferer(method, target_layer=None if method == "cam" else target_layer)
        vol = cam_volume(
            fa_t, mask, network, inferer, eval_transform, trained_indices=trained, class_idx=class_idx,
            batch_size=batch_size, coverage=coverage,
        )  # fmt: skip
        maps[method] = vol.fused.numpy()
        if domain is None:
            domain = vol.known.numpy() if vol.known is not None else np.asarray(brain, dtype=bool)
            # the class the maps are for: the volume's prediction is fixed by the first map's pass
            mapped = 1 if vol.class_idx == "difference" else int(vol.class_idx)
            class_idx = class_idx if class_idx is not None else mapped
    rng = np.random.default_rng([*seed, 1])
    maps["random"] = rng.random(np.shape(fa))
    maps["fa"] = np.asarray(fa, dtype=np.float64)
    return maps, domain, mapped


def faithfulness_for_volume(
    fa_path: str | os.PathLike,
    mask_path: str | os.PathLike | None,
    network: torch.nn.Module,
    eval_transform: Any,
    class_idx: Any,
    trained_selection: tuple[str, int] | Mapping[int, Sequence[int]] | None,
    coverage: str = "all",
    target_layer: str | None = None,
    steps: Sequence[float] = DEFAULT_STEPS,
    noise_std: float = 0.01,
    seed: int = 0,
    batch_size: int = 64,
    name: str = "",
) -> list[dict[str, Any]]:
    """Deletion and insertion curves of every map of :data:`MAPS` for one FA map.

    ``trained_selection=(selection, k)`` restricts a 2D network to its trained slices (as
    :func:`~hcp_cam.cam.pipeline.cam_for_volume`), a mapping axis -> indices to those slices (an
    axis left out is not used); ``None`` uses every slice with brain.

    Returns:
        one dict per map: ``map``, ``class``, ``prob_original`` and the output of
        :func:`~hcp_cam.cam.faithfulness.deletion_insertion_curves`.
    """
    img = load_nifti(fa_path, ndim=3)
    fa = np.asarray(img.dataobj, dtype=np.float32)
    brain = (np.asarray(load_nifti(mask_path, ndim=3).dataobj) > 0) if mask_path is not None else fa > 0
    spatial_dims = int(getattr(network, "spatial_dims", 2))
    trained = None
    if isinstance(trained_selection, Mapping):
        trained = {int(a): [int(i) for i in idx] for a, idx in trained_selection.items()}
    elif trained_selection is not None and spatial_dims == 2:
        trained = trained_slices(fa.shape, brain, *trained_selection)
    base = _volume_seed(seed, name or str(fa_path))
    maps, domain, mapped = faithfulness_maps(
        fa,
        brain,
        img.affine,
        network,
        eval_transform,
        class_idx,
        trained,
        coverage,
        target_layer,
        base,
        batch_size,
    )
    indices = None
    if spatial_dims == 2:  # the slices cam_volume computes: those with brain, within the trained range
        indices = {
            a: [
                i
                for i in slice_indices(fa.shape, brain, a, "mask")
                if trained is None or i in trained.get(a, [])
            ]
            for a in (0, 1, 2)
        }
        indices = {a: idx for a, idx in indices.items() if idx}
    probability = SubjectProbability(network, eval_transform, brain, mapped, indices, batch_size)
    p0 = probability(fa)
    tie = np.random.default_rng([*base, 2]).random(int(domain.sum()))
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    everything = np.flatnonzero(domain)
    p_empty = probability(emptied_volume(fa, brain, everything, noise_std, spacing, base))
    out = []
    for map_name, saliency in maps.items():
        order = relevance_order(saliency, domain, tie)
        curves = deletion_insertion_curves(
            fa, brain, order, probability, steps, noise_std, spacing, base, original=p0, emptied=p_empty
        )
        out.append({"map": map_name, "class": mapped, "prob_original": p0, **curves})
    return out


def run_faithfulness(
    prepared: Any,
    network: torch.nn.Module,
    output_dir: str | os.PathLike,
    eval_transform: Any,
    enabled: bool = True,
    split: str = "test",
    cam_class: str | int | None = "old",
    cam_slices: str = "trained",
    coverage: str = "all",
    target_layer: str | None = None,
    steps: Sequence[float] = DEFAULT_STEPS,
    noise_std: float = 0.01,
    seed: int = 0,
    batch_size: int = 64,
    task: str = "classification",
) -> pd.DataFrame | None:
    """Faithfulness of the maps of every acquisition of the held-out subjects, as files (module doc).

    ``split`` is the inference's ``cam_split``: the test subjects are scored when it includes them
    (``test`` or ``all``), else the acquisitions of that split. Nothing is done when ``enabled`` is
    false (the bundle's ``cam_faithfulness``).

    Returns:
        the ``faithfulness.csv`` table, or ``None`` when disabled, for a regression run (``task``) or
        for maps other than one class's or the two-class difference (``each``, ``*_vs_rest``): the
        curves follow one class's subject-level probability, and those maps have none.
    """
    if not enabled:
        return None
    multi = isinstance(cam_class, str) and (cam_class == "each" or cam_class.endswith("_vs_rest"))
    if str(task).strip().lower() == "regression" or multi:
        logger.info(
            "faithfulness: not computed for task %r with cam_class %r (one class's map only)", task, cam_class
        )
        return None
    if cam_slices not in CAM_SLICES:
        raise ConfigError(f"cam_slices must be one of {CAM_SLICES}, got {cam_slices!r}")
    if not float(noise_std) >= 0:
        raise ConfigError(f"faithfulness_noise must be a number >= 0 (FA units), got {noise_std!r}")
    f = np.asarray(steps, dtype=float)
    if f.ndim != 1 or len(f) < 2 or f[0] != 0 or f[-1] != 1 or np.any(np.diff(f) <= 0):
        raise ConfigError(f"faithfulness steps must increase from 0 to 1, got {list(steps)}")
    labels = prepared.labels
    class_idx = resolve_cam_class(cam_class, labels)
    scored = "test" if split in ("test", "all") else split
    todo = prepared.entries[scored]
    trained = (prepared.slice_selection, prepared.slices_per_axis) if cam_slices == "trained" else None
    rows, points = [], []
    for e in tqdm(todo, desc="faithfulness", unit="acq", disable=None):
        name = f"{e['subject']}/{e['acquisition']}"
        results = faithfulness_for_volume(
            e["fa"], e.get("mask_abs"), network, eval_transform, class_idx, trained, coverage, target_layer,
            steps, noise_std, seed, batch_size, name,
        )  # fmt: skip
        ids = {"subject": e["subject"], "acquisition": e["acquisition"], "group": e.get("group")}
        for r in results:
            cls = labels[r["class"]] if class_idx != "difference" else f"{labels[1]} minus {labels[0]}"
            rows.append({**ids, "map": r["map"], "deletion_auc": r["deletion_auc"],
                         "insertion_auc": r["insertion_auc"], "class": cls, "prob_original": r["prob_original"]})  # fmt: skip
            for curve in ("deletion", "insertion"):
                for f, nv, p in zip(r["fractions"], r["n_voxels"], r[curve], strict=True):
                    points.append(
                        {
                            **ids,
                            "map": r["map"],
                            "curve": curve,
                            "fraction": f,
                            "n_voxels": nv,
                            "probability": p,
                        }
                    )
    table = pd.DataFrame(rows, columns=list(_COLUMNS))
    curves = pd.DataFrame(points)
    cam_dir = Path(output_dir) / "cam"
    names = ["faithfulness.csv", "faithfulness_curves.csv"] + (["faithfulness.png"] if len(curves) else [])
    with atomic_paths([cam_dir / n for n in names]) as tmps:  # all three or none
        table.to_csv(tmps[0], index=False)
        curves.to_csv(tmps[1], index=False)
        if len(curves):
            plot_faithfulness(curves, tmps[2], class_name=str(table["class"].iloc[0]))
    _log_summary(table)
    return table


def _log_summary(table: pd.DataFrame) -> None:
    if not len(table):
        return
    mean = table.groupby("map", sort=False)[["deletion_auc", "insertion_auc"]].mean()
    for name, r in mean.iterrows():
        logger.info(
            "faithfulness %-9s deletion AUC %.3f, insertion AUC %.3f",
            name,
            r["deletion_auc"],
            r["insertion_auc"],
        )


def plot_faithfulness(curves: pd.DataFrame, path: str | os.PathLike, class_name: str = "") -> Path:
    """Mean deletion and insertion curves per map (columns), one row of panels per group.

    Args:
        curves: the ``faithfulness_curves.csv`` table.
        path: the PNG to write.
        class_name: the mapped class, for the axis label.
    """
    groups = sorted(
        dict.fromkeys(curves["group"].astype(str)), key=lambda g: g != class_name
    )  # its group first
    fig = new_figure(10, 3.4 * len(groups))
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for row, group in zip(axes, groups, strict=True):
        sub = curves[curves["group"].astype(str) == group]
        n = sub["subject"].astype(str).str.cat(sub["acquisition"].astype(str), sep="/").nunique()
        for ax, curve in zip(row, ("deletion", "insertion"), strict=True):
            part = sub[sub["curve"] == curve]
            for name in dict.fromkeys(part["map"]):
                mean = part[part["map"] == name].groupby("fraction")["probability"].mean()
                style = "--" if name in ("random", "fa") else "-"
                ax.plot(100 * mean.index.to_numpy(), mean.to_numpy(), style, marker="o", ms=3, label=name)
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(0, 100)
            ax.set_xticks([0, 1, 2, 5, 10, 20, 50, 100], ["0", "1", "2", "5", "10", "20", "50", "100"])
            ax.set_ylim(0, 1)
            ax.set_xlabel("% of scored voxels " + ("removed" if curve == "deletion" else "restored"))
            ax.set_ylabel(f"P({class_name})" if class_name else "probability")
            ax.set_title(f"{curve}, group {group} (n={n})")
            ax.grid(alpha=0.3)
    axes[0][1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
