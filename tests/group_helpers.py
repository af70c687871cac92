"""Bundle-like run folders with planted CAM volumes, for the group analysis tests.

The dataset is the real generator's (misaligned heads, ground truth, template and atlas); each
"run" holds what the bundle's inference writes and the group step reads: ``datalist.json`` (split and
grouping rule), ``cam/summary.csv`` and ``cam/<subject>/dwi_cam.nii.gz``. The CAM of an old subject is
a blob on its own planted region (in its native grid); a young subject's is flat; both are 0
(unknown) outside a central block, as the bundle's CAM is outside the block its slabs cross.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from hcp_cam.io import save_nifti_like
from hcp_cam.synth import generate_dataset

__all__ = ["GroupData", "make_group_data", "write_run"]

GROUPS = {"young": [8.0, 15.0], "old": [25.0, 75.0]}


@dataclass(frozen=True)
class GroupData:
    dataset: Path
    runs: list[Path]
    template: Path
    atlas: Path
    atlas_labels: Path
    subjects: pd.DataFrame


def _bumps(shape: tuple, rng: np.random.Generator, n: int, sigma: float, amplitude: float) -> np.ndarray:
    """A smooth field: ``n`` Gaussian bumps at random places with N(0, amplitude) heights."""
    idx = np.indices(shape).reshape(3, -1).T
    field = np.zeros(len(idx))
    for _ in range(n):
        centre = rng.uniform(0.25, 0.75, 3) * np.asarray(shape)
        field += rng.normal(0, amplitude) * np.exp(-np.sum((idx - centre) ** 2, axis=1) / (2 * sigma**2))
    return field.reshape(shape)


def _cam(
    roi: np.ndarray, fa: np.ndarray, old: bool, rng: np.random.Generator, block: int, old_gain: float = 1.0,
    background: float = 0.0,
) -> np.ndarray:  # fmt: skip
    shape = np.asarray(fa.shape)
    idx = np.indices(fa.shape).reshape(3, -1).T
    centre = np.argwhere(roi).mean(0)
    blob = np.exp(-np.sum((idx - centre) ** 2, axis=1) / (2 * 2.0**2)).reshape(fa.shape)
    cam = 0.2 + (1.0 * blob if old else 0.0) + 0.05 * rng.standard_normal(fa.shape)
    if background:  # each subject's own smooth pattern, as real CAMs differ from head to head
        cam = cam + 0.8 + _bumps(fa.shape, rng, 8, 3.0, background)
    if old:  # a larger "old" score scales an old subject's whole map
        cam = old_gain * cam
    known = np.zeros(fa.shape, bool)
    lo = (shape - block) // 2
    known[lo[0] : lo[0] + block, lo[1] : lo[1] + block, lo[2] : lo[2] + block] = True
    return np.where(known & (fa > 0), cam, 0.0).astype(np.float32)


def write_run(
    run: Path, dataset: Path, test: list[dict], train: list[dict], groups: dict | None = None, labels=None,
    old_gain: float = 1.0, background: float = 0.0,
) -> Path:  # fmt: skip
    """A run folder: its datalist, and a CAM summary and volume for every ``test`` entry.

    ``old_gain`` multiplies an old subject's whole CAM (a global confidence offset); ``background``
    adds a base of 0.8 and a smooth per-subject pattern of that amplitude to every CAM.
    """
    gt = dataset / "derivatives" / "ground_truth"
    run.mkdir(parents=True, exist_ok=True)
    datalist = {
        "labels": labels or ["young", "old"],
        "groups": groups or GROUPS,
        "training": train,
        "validation": [],
        "test": test,
    }
    (run / "datalist.json").write_text(json.dumps(datalist, indent=2))
    rows = []
    for e in test:
        sid = e["subject"]
        fa_img = nib.load(gt / f"{sid}_fa.nii.gz")
        roi = np.asarray(nib.load(gt / f"{sid}_roi.nii.gz").dataobj) > 0
        rng = np.random.default_rng(int(sid))
        cam = _cam(roi, np.asarray(fa_img.dataobj), e["group"] == "old", rng, 14, old_gain, background)
        save_nifti_like(cam, fa_img, run / "cam" / sid / "dwi_cam.nii.gz", "CAM raw, class old")
        rows.append(
            {"split": "test", "subject": sid, "acquisition": "dwi", "group": e["group"],
             "fa": str(gt / f"{sid}_fa.nii.gz"), "cam_class": "old"}
        )  # fmt: skip
    pd.DataFrame(rows).to_csv(run / "cam" / "summary.csv", index=False)
    return run


def make_group_data(root: Path, n_subjects: int = 12, folds: int = 2, seed: int = 0) -> GroupData:
    """A misaligned synthetic dataset and ``folds`` runs whose test subjects cover it once."""
    ds = generate_dataset(root / "data", n_subjects=n_subjects, shape=(24, 28, 24), seed=seed, misalign=True,
                          progress=False)  # fmt: skip
    table = ds.participants
    entries = [{"subject": r.subject, "acquisition": "dwi", "group": r.group, "label": int(r.group == "old")}
               for r in table.itertuples()]  # fmt: skip
    by_group = {g: [e for e in entries if e["group"] == g] for g in ("young", "old")}
    runs = []
    for k in range(folds):
        test = [e for g in by_group.values() for i, e in enumerate(g) if i % folds == k]
        train = [e for e in entries if e not in test]
        runs.append(write_run(root / f"run{k}", ds.root, test, train))
    return GroupData(ds.root, runs, ds.template, ds.atlas, ds.atlas_labels, table)
