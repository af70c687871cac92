"""CAM for every acquisition of a split, written as files: what the bundle's ``inference`` runs.

Per acquisition, under ``<output_dir>/cam/<subject>/``:
- ``<acquisition>_cam.nii.gz``: the raw CAM (the weighted sum of the last feature maps by the
  classifier weights of the class), float32, exactly the FA's affine and sform/qform;
- ``<acquisition>_cam01.nii.gz``: the same map scaled to [0, 1] over the brain, per volume;
- ``<acquisition>_bbox.json``: the 3D box (20%-of-max threshold, largest connected component)
  in voxel indices and world millimetres, the peak, the predicted class and probabilities;
- ``<acquisition>_overlay.png``: three orthogonal planes through the peak.
Plus ``<output_dir>/cam/summary.csv``, ``randomisation_check.json`` (model-randomisation sanity
check on the first acquisition) and, with ground truth, ``localization.csv``/``.md``.

A regressor's map is that of its one output (positive: pushes the predicted age up); its rows carry
``predicted_age`` in years instead of class probabilities. ``cam_class`` ``each`` (or
``each_vs_rest``) writes one complete CAM output per class (or per one-vs-rest map) into
``<output_dir>/cam_<class>/`` (``cam_<class>_vs_rest/``).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from monai.data import MetaTensor
from tqdm import tqdm

from hcp_cam.cam.bbox import EmptyCAMWarning, bounding_box, box_to_world
from hcp_cam.cam.inferer import CAMInferer, one_vs_rest
from hcp_cam.cam.nifti import normalise01, write_cam_nifti
from hcp_cam.cam.sanity import randomisation_check_volume
from hcp_cam.cam.volume import COVERAGE_MODES, cam_volume
from hcp_cam.errors import ConfigError, InputError
from hcp_cam.fa_volume import load_fa_with_mask
from hcp_cam.io import atomic_path, load_nifti, write_json_atomic
from hcp_cam.transforms.slicing import trained_slices

__all__ = [
    "resolve_cam_class",
    "cam_classes",
    "cam_for_volume",
    "run_cam_inference",
    "CAM_SLICES",
]

logger = logging.getLogger(__name__)

CAM_SLICES = ("trained", "all")


def resolve_cam_class(cam_class: str | int | None, labels: Sequence[str]) -> int | str | None:
    """A class name, index, ``"predicted"``/``None``, ``"difference"`` or ``"<name>_vs_rest"`` -> what
    the inferer takes."""
    if cam_class is None or cam_class == "predicted":
        return None
    if isinstance(cam_class, str) and re.fullmatch(r"vs_rest:\d+", cam_class):  # one_vs_rest(i) itself
        return one_vs_rest(int(cam_class.split(":")[1]))
    if (
        isinstance(cam_class, str)
        and cam_class.endswith("_vs_rest")
        and cam_class[: -len("_vs_rest")] in labels
    ):
        if len(labels) < 2:
            raise ConfigError(f"cam_class {cam_class!r} needs two or more classes, got {list(labels)}")
        return one_vs_rest(list(labels).index(cam_class[: -len("_vs_rest")]))
    if cam_class == "difference":
        if len(labels) != 2:
            raise ConfigError(f"cam_class 'difference' needs two classes, got {list(labels)}")
        return "difference"
    if isinstance(cam_class, int) or str(cam_class).isdigit():
        idx = int(cam_class)
        if not 0 <= idx < len(labels):
            raise ConfigError(f"cam_class {idx} is out of range for the classes {list(labels)}")
        return idx
    if cam_class in labels:
        return list(labels).index(cam_class)
    raise ConfigError(
        f"unknown cam_class {cam_class!r}; use one of {list(labels)}, an index, 'predicted', 'difference', "
        "'<class>_vs_rest', 'each' or 'each_vs_rest'"
    )


def cam_classes(cam_class: str | int | None, labels: Sequence[str]) -> list[tuple[str, Any]] | None:
    """For ``each`` / ``each_vs_rest``: ``[(folder, class_idx), ...]``, one per class (``cam_<name>``
    or ``cam_<name>_vs_rest``); ``None`` for a single map (:func:`resolve_cam_class`)."""
    if cam_class == "each":
        return [(f"cam_{name}", i) for i, name in enumerate(labels)]
    if cam_class == "each_vs_rest":
        if len(labels) < 2:
            raise ConfigError(f"cam_class 'each_vs_rest' needs two or more classes, got {list(labels)}")
        return [(f"cam_{name}_vs_rest", one_vs_rest(i)) for i, name in enumerate(labels)]
    return None


def _class_name(class_idx: Any, labels: Sequence[str]) -> str:
    if isinstance(class_idx, int):
        return labels[class_idx]
    if class_idx == "difference":
        return f"{labels[1]} minus {labels[0]}"
    if isinstance(class_idx, str) and class_idx.startswith("vs_rest:"):
        return f"{labels[int(class_idx.split(':')[1])]} vs rest"
    return "predicted"


def cam_for_volume(
    fa_path: str | os.PathLike,
    mask_path: str | os.PathLike | None,
    network: torch.nn.Module,
    inferer: CAMInferer,
    eval_transform: Any,
    out_prefix: str | os.PathLike,
    labels: Sequence[str],
    class_idx: Any = None,
    trained_selection: tuple[str, int] | None = None,
    fraction: float = 0.2,
    roi_path: str | os.PathLike | None = None,
    figure: bool = True,
    batch_size: int = 64,
    coverage: str = "all",
    target: Any = None,
    title: str | None = None,
) -> dict[str, Any]:
    """CAM of one FA map, written as ``<out_prefix>_cam.nii.gz``, ``_cam01.nii.gz``, ``_bbox.json``
    and ``_overlay.png``; returns one row of results (prediction, box, localization scores).
    ``trained_selection=(selection, k)`` restricts the maps of a 2D network to the slices it was
    trained on (:func:`~hcp_cam.transforms.slicing.trained_slices` of this volume's mask; the rest
    is unknown); ``None`` computes every slice with brain. ``coverage`` says which voxels the fused
    map knows (:func:`~hcp_cam.cam.volume.cam_volume`). ``target`` (a regressor's
    :class:`~hcp_cam.training.tasks.TargetScale`) turns the mean output over the computed slices into
    the row's ``predicted_age``, in years, instead of class probabilities. ``title`` heads the figure
    (default: the prefix's folder and name).

    Raises:
        InputError: unreadable FA/mask, mask grid differs from the FA, empty mask.
    """
    vol = load_fa_with_mask(fa_path, mask_path)
    fa_img, fa_np, mask_np = vol.image, vol.fa, vol.mask
    affine = torch.as_tensor(vol.affine)
    fa = MetaTensor(torch.from_numpy(fa_np)[None], affine=affine, meta={"filename_or_obj": str(fa_path)})
    mask = torch.from_numpy(mask_np.astype(np.uint8))[None]
    roi = None
    if roi_path is not None:
        if not Path(roi_path).is_file():
            raise InputError("ground-truth region file not found", roi_path)
        roi = np.asarray(load_nifti(roi_path, ndim=3).dataobj) > 0
        if roi.shape != fa_np.shape:
            raise InputError(f"ROI grid {roi.shape} differs from the FA grid {fa_np.shape}", roi_path)

    trained = None
    if trained_selection is not None and getattr(network, "spatial_dims", 2) == 2:
        trained = trained_slices(fa_np.shape, mask_np, *trained_selection)
    vol = cam_volume(
        fa, mask, network, inferer, eval_transform, trained_indices=trained, class_idx=class_idx,
        batch_size=batch_size, coverage=coverage,
    )  # fmt: skip
    logits = vol.logits_mean.float()
    prob = torch.softmax(logits, 0).numpy()
    shown = vol.class_idx if vol.class_idx is not None else int(prob.argmax())
    name = _class_name(shown, labels)
    known = vol.known.numpy() if vol.known is not None else mask_np
    if not known.any():
        raise InputError("no brain voxel lies on a slice the network was trained on", fa_path)
    # voxels on no computed slice are unknown: 0 in the written maps, and never the peak or
    # inside the box (filled with the lowest known value, or 0 if that is lower)
    fused = np.where(known, vol.fused.numpy(), 0.0).astype(np.float32)
    scored = np.where(known, fused, min(0.0, float(fused[known].min()))).astype(np.float32)
    prefix = Path(out_prefix)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmptyCAMWarning)
        box = bounding_box(scored, fraction=fraction)
    if caught or not (fused[known] > 0).any():
        logger.warning("%s: the CAM is zero or negative everywhere; written, with an empty box", fa_path)
    write_cam_nifti(fused, fa_img, f"{prefix}_cam.nii.gz", kind="raw", class_name=name)
    if fused[known].max() > fused[known].min():
        cam01 = normalise01(fused, known).numpy()
    else:
        cam01 = np.zeros_like(fused)
    write_cam_nifti(cam01, fa_img, f"{prefix}_cam01.nii.gz", kind="normalised", class_name=name)
    peak = [int(i) for i in np.unravel_index(int(np.argmax(np.where(known, fused, -np.inf))), fused.shape)]
    _, min_mm, max_mm = box_to_world(box, fa_img.affine, edges=True)
    if target is not None:  # a regressor: its one output in years, no probabilities
        prediction = {"predicted_age": float(target.to_years(float(logits[0])))}
    else:
        prediction = {
            "predicted": labels[int(prob.argmax())],
            **{f"prob_{lab}": float(p) for lab, p in zip(labels, prob, strict=True)},
        }
    row: dict[str, Any] = {
        "fa": str(fa_path),
        "cam_class": name,
        **prediction,
        "peak_voxel": peak,
        "peak_mm": nib.affines.apply_affine(fa_img.affine, peak).round(3).tolist(),
        "box": box.to_dict(),
        "box_min_mm": None if box.is_empty else min_mm.round(3).tolist(),
        "box_max_mm": None if box.is_empty else max_mm.round(3).tolist(),
        "threshold_fraction": fraction,
        "values": "raw CAM in *_cam.nii.gz; [0,1] per volume over the known brain voxels in *_cam01.nii.gz; "
        "0 in both where no computed slice passes (unknown)"
        + (", or where not every axis has one (coverage 'all')" if coverage == "all" else ""),
        "coverage": coverage,
        "known_voxels": int(known.sum()),
    }
    if roi is not None:
        from hcp_cam.cam.localization import localization_scores

        row["localization"] = {
            k: _plain(v)
            for k, v in localization_scores(
                scored, roi, fraction=fraction, spacing=fa_img.header.get_zooms()[:3]
            ).items()
        }
        # what a flat map scores: the region's share of the known voxels (chance for the energy share)
        row["localization"]["energy_baseline"] = float((roi & known).sum() / known.sum())
    write_json_atomic(row, f"{prefix}_bbox.json")
    if figure:
        from hcp_cam.cam.figures import orthogonal_overlay

        box_arg = None if box.is_empty else (box.min_index, box.max_index)
        heading = title or f"{prefix.parent.name} {prefix.name}"
        orthogonal_overlay(
            fa_np, cam01, f"{prefix}_overlay.png", box=box_arg, title=f"{heading}: CAM {name}",
            affine=fa_img.affine,
        )  # fmt: skip
    return row


def _plain(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def run_cam_inference(
    prepared: Any,
    network: torch.nn.Module,
    output_dir: str | os.PathLike,
    eval_transform: Any,
    split: str = "test",
    method: str = "cam",
    target_layer: str | None = None,
    cam_class: str | int | None = "old",
    cam_slices: str = "trained",
    fraction: float = 0.2,
    roi_dir: str | os.PathLike | None = None,
    figures: bool = True,
    batch_size: int = 64,
    randomisation_check: bool = True,
    coverage: str = "all",
    task: str = "classification",
    target: Any = None,
    cam_dir_name: str = "cam",
) -> pd.DataFrame:
    """CAM volumes for every acquisition of ``split`` (``"all"`` for every split).

    ``cam_slices="trained"`` computes maps only on the slices the network was trained on (the
    centre ``slices_per_axis`` per axis for the default selection) and leaves the rest unknown:
    a network asked about slices it never saw lights up rims of cortex (docs/architecture.md, "Lessons").
    ``"all"`` computes every slice with brain. ``coverage="all"`` keeps the fused map where every
    axis covers a voxel (the block where the three trained slabs cross), ``"any"`` wherever one does
    (:func:`~hcp_cam.cam.volume.cam_volume`). ``randomisation_check`` writes
    ``<output_dir>/cam/randomisation_check.json`` for the first acquisition (of the test split
    when it is mapped; :func:`randomisation_check_volume`).

    ``task="regression"`` maps the network's one output (``cam_class`` is then unused) and reports
    ``predicted_age`` with ``target`` (the run's target scale). ``cam_class`` ``each``/``each_vs_rest``
    runs this once per class into ``<output_dir>/cam_<class>[_vs_rest]/`` and returns the rows of all.

    Returns:
        one row per acquisition (also written to ``<output_dir>/cam/summary.csv``); with
        ground truth (``roi_dir`` holding ``<subject>_roi.nii.gz``) the localization scores are
        in the rows and in ``localization.csv``/``localization.md``.
    """
    if cam_slices not in CAM_SLICES:
        raise ConfigError(f"cam_slices must be one of {CAM_SLICES}, got {cam_slices!r}")
    if coverage not in COVERAGE_MODES:
        raise ConfigError(f"cam_coverage must be one of {COVERAGE_MODES}, got {coverage!r}")
    labels = prepared.labels
    regression = str(task).strip().lower() == "regression"
    many = None if regression else cam_classes(cam_class, labels)
    if many is not None:
        common = dict(
            split=split, method=method, target_layer=target_layer, cam_slices=cam_slices, fraction=fraction,
            roi_dir=roi_dir, figures=figures, batch_size=batch_size, randomisation_check=randomisation_check,
            coverage=coverage, task=task, target=target,
        )  # fmt: skip
        tables = [
            run_cam_inference(
                prepared, network, output_dir, eval_transform, cam_class=idx, cam_dir_name=folder, **common
            ).assign(cam_dir=folder)
            for folder, idx in many
        ]
        return pd.concat(tables, ignore_index=True)
    # a regressor has one output, the age: its map is that of output 0 whatever cam_class says
    class_idx = 0 if regression else resolve_cam_class(cam_class, labels)
    inferer = CAMInferer(method=method, target_layer=target_layer)
    splits = ("training", "validation", "test") if split == "all" else (split,)
    cam_dir = Path(output_dir) / cam_dir_name
    rows = []
    todo = [(s, e) for s in splits for e in prepared.entries[s]]
    for s, e in tqdm(todo, desc="CAM volumes", unit="acq", disable=None):
        trained = (prepared.slice_selection, prepared.slices_per_axis) if cam_slices == "trained" else None
        roi = Path(roi_dir) / f"{e['subject']}_roi.nii.gz" if roi_dir else None
        if roi is not None and not roi.is_file():
            logger.warning(
                "no ground-truth region %s: %s/%s is not scored", roi, e["subject"], e["acquisition"]
            )
            roi = None
        row = cam_for_volume(
            e["fa"], e.get("mask_abs"), network, inferer, eval_transform,
            cam_dir / e["subject"] / e["acquisition"], labels, class_idx=class_idx, trained_selection=trained,
            fraction=fraction, roi_path=roi, figure=figures, batch_size=batch_size, coverage=coverage,
            target=target if regression else None,
        )  # fmt: skip
        ids = {"split": s, "subject": e["subject"], "acquisition": e["acquisition"], "group": e.get("group")}
        if regression:
            ids["age"] = e.get("age")
        rows.append({**ids, **row})
    table = pd.json_normalize(rows)
    with atomic_path(cam_dir / "summary.csv") as tmp:
        table.to_csv(tmp, index=False)
    if any("localization" in r for r in rows):
        _write_localization(table, cam_dir, labels)
    if randomisation_check and todo:
        e = next((e for s, e in todo if s == "test"), todo[0][1])  # a held-out subject when mapped
        randomisation_check_volume(
            e["fa"], e.get("mask_abs"), network, inferer, eval_transform, cam_dir / "randomisation_check.json",
            class_idx=class_idx, slice_selection=prepared.slice_selection, slices_per_axis=prepared.slices_per_axis,
            cam_slices=cam_slices, batch_size=batch_size, name=f"{e['subject']}/{e['acquisition']}",
        )  # fmt: skip
    return table


_SCORES = (
    "pointing_game",
    "peak_distance",
    "energy_pointing_game",
    "energy_baseline",
    "iou",
    "dice",
    "box_iou",
)


def _write_localization(table: pd.DataFrame, cam_dir: Path, labels: Sequence[str]) -> None:
    """Per-acquisition scores (CSV) and their mean per group (Markdown)."""
    ids = [
        c
        for c in (
            "split",
            "subject",
            "acquisition",
            "group",
            "age",
            "cam_class",
            "predicted",
            "predicted_age",
        )
        if c in table.columns
    ]
    scores = [f"localization.{k}" for k in _SCORES if f"localization.{k}" in table.columns]
    loc = table[ids + scores].rename(columns=lambda c: c.replace("localization.", ""))
    loc[list(_SCORES)] = loc[list(_SCORES)].astype(float)
    with atomic_path(cam_dir / "localization.csv") as tmp:
        loc.to_csv(tmp, index=False)
    summary = (
        loc.groupby("group")[list(_SCORES)].mean().reset_index() if "group" in loc else loc[list(_SCORES)]
    )
    summary.insert(1, "n", loc.groupby("group").size().values if "group" in loc else len(loc))
    lines = ["| " + " | ".join(summary.columns) + " |", "|" + "---|" * len(summary.columns)]
    for _, r in summary.iterrows():
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |")
    header = (
        f"Localization of the CAM for class {loc['cam_class'].iloc[0]!r} against the ground-truth region, "
        "mean per group (pointing game: share of acquisitions whose CAM peak lies in the region; "
        "peak_distance: mm from the CAM peak to the nearest region voxel, 0 inside; energy_pointing_game: "
        "share of the positive CAM mass inside the region; energy_baseline: the same for a flat map, "
        "the region's share of the known brain voxels)\n\n"
    )
    with atomic_path(cam_dir / "localization.md") as tmp:
        tmp.write_text(header + "\n".join(lines) + "\n")
