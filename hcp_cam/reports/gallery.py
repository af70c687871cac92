"""Figures from finished bundle runs: one subject seen by several networks, and group-mean CAMs.

A run folder, after the bundle's ``inference``, holds

- ``RUN/config.json``: ``arch`` (``network``/``network_name``/``net`` are read too) and ``fold``;
- ``RUN/cam/summary.csv``: one row per acquisition with at least ``subject``, ``acquisition``,
  ``group`` and ``fa`` (path of the FA map; a relative path is taken from the run folder), and
  ``split`` to select by split;
- ``RUN/cam/<subject>/<acquisition>_cam01.nii.gz``: the CAM scaled to [0, 1] per volume, on the
  FA's grid.

:func:`network_comparison` draws the ``_cam01`` maps of one subject from several runs over its FA;
:func:`cohort` averages the ``_cam01`` maps per group over a run's acquisitions, which needs them
on one grid (the synthetic data; real HCP data must be registered to a template first).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from hcp_cam.cam.figures import cohort_figure, network_comparison_figure
from hcp_cam.errors import InputError
from hcp_cam.io import load_nifti, recorded_path, save_nifti_like
from hcp_cam.reports.compare import ARCH_KEYS

__all__ = [
    "GRID_ATOL",
    "CAMRun",
    "Cohort",
    "NetworkComparison",
    "read_cam_run",
    "run_labels",
    "load_network_comparison",
    "network_comparison",
    "write_network_comparison",
    "load_cohort",
    "cohort_means",
    "write_cohort",
    "cohort",
    "safe_name",
]

GRID_ATOL = 1e-4  # mm: affines closer than this are the same grid (float32 headers round-trip)
SUMMARY_COLUMNS = ("subject", "acquisition", "group", "fa")


@dataclass
class CAMRun:
    """One bundle run folder with CAMs: where it is, its network and its ``cam/summary.csv``."""

    run_dir: Path
    arch: str
    fold: int | None
    num_folds: int | None
    summary: pd.DataFrame = field(repr=False)

    def cam01_path(self, subject: str, acquisition: str) -> Path:
        return self.run_dir / "cam" / subject / f"{acquisition}_cam01.nii.gz"

    def fa_path(self, row: pd.Series) -> Path:
        return recorded_path(row["fa"], self.run_dir)


def _int_or_none(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def read_cam_run(run_dir: str | os.PathLike) -> CAMRun:
    """Read a run folder's ``config.json`` and ``cam/summary.csv`` (files are loaded later).

    Raises:
        InputError: the folder, its config or its summary is missing or unreadable, or the summary
            lacks one of the columns ``subject``, ``acquisition``, ``group``, ``fa``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run directory not found", run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise InputError("file not found (not a bundle run folder?)", config_path)
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not valid JSON: {e}", config_path) from e
    if not isinstance(config, dict):
        raise InputError("expected a JSON object", config_path)
    arch = next((config[k] for k in ARCH_KEYS if isinstance(config.get(k), str)), run_dir.name)
    summary_path = run_dir / "cam" / "summary.csv"
    if not summary_path.is_file():
        raise InputError("file not found: run the bundle's inference on this run first", summary_path)
    try:
        # strings throughout: subject IDs such as "0123" must keep their leading zeros
        summary = pd.read_csv(summary_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read as a CSV table: {e}", summary_path) from e
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise InputError(f"missing columns {missing} (has {list(summary.columns)})", summary_path)
    if summary.empty:
        raise InputError("no acquisition listed", summary_path)
    return CAMRun(
        run_dir, str(arch), _int_or_none(config.get("fold")), _int_or_none(config.get("num_folds")), summary
    )


def run_labels(runs: Sequence[CAMRun]) -> list[str]:
    """Row labels: the arch, ``"<arch> fold <k>"`` when runs share an arch, the folder name if still equal."""
    archs = [r.arch for r in runs]
    labels = [
        f"{r.arch} fold {r.fold}" if archs.count(r.arch) > 1 and r.fold is not None else r.arch for r in runs
    ]
    return [
        f"{lab} ({r.run_dir.name})" if labels.count(lab) > 1 else lab
        for lab, r in zip(labels, runs, strict=True)
    ]


def safe_name(text: str) -> str:
    """``text`` usable in a file name: anything but letters, digits, ``.``, ``_``, ``-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)) or "_"


def _same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, rtol=0.0, atol=GRID_ATOL)


def _grid_text(img: nib.Nifti1Image) -> str:
    return f"shape {img.shape[:3]}, affine {np.round(img.affine[:3], 4).tolist()}"


def _load_cam01(run: CAMRun, subject: str, acquisition: str, fa: nib.Nifti1Image) -> np.ndarray:
    path = run.cam01_path(subject, acquisition)
    img = load_nifti(path, ndim=3)
    if not _same_grid(img, fa):
        raise InputError(f"not on its FA's grid ({_grid_text(img)} vs the FA's {_grid_text(fa)})", path)
    return np.asarray(img.dataobj, dtype=np.float64)


@dataclass
class NetworkComparison:
    """The maps :func:`network_comparison` draws: ``cams`` label -> ``(X, Y, Z)`` [0, 1] CAM."""

    subject: str
    acquisition: str
    fa: np.ndarray
    affine: np.ndarray
    cams: dict[str, np.ndarray]


def load_network_comparison(
    run_dirs: Sequence[str | os.PathLike], subject: str | None = None, acquisition: str | None = None
) -> NetworkComparison:
    """Load one subject's FA and its ``_cam01`` map from every run (see :func:`network_comparison`)."""
    if not run_dirs:
        raise InputError("network comparison: no run folder given")
    resolved = [Path(d).resolve() for d in run_dirs]
    twice = sorted({str(d) for d in resolved if resolved.count(d) > 1})
    if twice:
        raise InputError(f"network comparison: run folder given twice: {twice}")
    runs = [read_cam_run(d) for d in run_dirs]
    per_run = [set(r.summary["subject"]) for r in runs]
    common = set.intersection(*per_run)
    if subject is None:
        if not common:
            listing = "; ".join(f"{r.run_dir}: {sorted(s)}" for r, s in zip(runs, per_run, strict=True))
            raise InputError(f"no subject is in every run's cam/summary.csv ({listing})")
        subject = sorted(common)[0]
    elif subject not in common:
        lacking = [str(r.run_dir) for r, s in zip(runs, per_run, strict=True) if subject not in s]
        raise InputError(f"subject {subject!r} is not in cam/summary.csv of {lacking}")
    rows = [r.summary[r.summary["subject"] == subject].drop_duplicates("acquisition") for r in runs]
    acqs = set.intersection(*(set(x["acquisition"]) for x in rows))
    if acquisition is None:
        if not acqs:
            raise InputError(f"subject {subject!r} has no acquisition common to all runs")
        acquisition = sorted(acqs)[0]
    elif acquisition not in acqs:
        have = {str(r.run_dir): sorted(x["acquisition"]) for r, x in zip(runs, rows, strict=True)}
        raise InputError(
            f"subject {subject!r} has no acquisition {acquisition!r} in every run (runs have {have})"
        )
    fas: dict[Path, nib.Nifti1Image] = {}
    cams: dict[str, np.ndarray] = {}
    first_fa: tuple[Path, nib.Nifti1Image] | None = None
    for run, label, sub_rows in zip(runs, run_labels(runs), rows, strict=True):
        fa_path = run.fa_path(sub_rows[sub_rows["acquisition"] == acquisition].iloc[0])
        if fa_path not in fas:
            fas[fa_path] = load_nifti(fa_path, ndim=3)
        fa = fas[fa_path]
        if first_fa is None:
            first_fa = (fa_path, fa)
        elif not _same_grid(fa, first_fa[1]):
            raise InputError(
                f"FA grid of subject {subject!r} differs between runs ({_grid_text(fa)} vs "
                f"{_grid_text(first_fa[1])} in {first_fa[0]}): the runs did not use the same FA cache",
                fa_path,
            )
        cams[label] = _load_cam01(run, subject, acquisition, fa)
    fa = first_fa[1]
    return NetworkComparison(subject, acquisition, np.asarray(fa.dataobj, np.float64), fa.affine, cams)


def network_comparison(
    run_dirs: Sequence[str | os.PathLike],
    subject: str | None = None,
    acquisition: str | None = None,
    *,
    out_png: str | os.PathLike,
) -> Path:
    """One subject, one row per run: its ``_cam01`` map over its FA, through each map's peak.

    Args:
        run_dirs: bundle run folders with ``config.json`` and ``cam/summary.csv``.
        subject: a subject listed in every run's summary; default the first, in sorted order, that is.
        acquisition: default the first, in sorted order, that every run has for the subject.
        out_png: output PNG (written atomically).

    Returns:
        ``out_png``. Rows are labelled by arch (``"<arch> fold <k>"`` when runs share an arch).

    Raises:
        InputError: no common subject (the message lists each run's subjects), subject or
            acquisition missing from a run, the FA grids of the subject differ between runs, a CAM
            not on its FA's grid, a missing or unreadable file.
    """
    return write_network_comparison(load_network_comparison(run_dirs, subject, acquisition), out_png)


def write_network_comparison(data: NetworkComparison, out_png: str | os.PathLike) -> Path:
    """Draw loaded :class:`NetworkComparison` maps to ``out_png`` (see :func:`network_comparison`)."""
    return network_comparison_figure(
        data.fa,
        data.cams,
        out_png,
        affine=data.affine,
        title=f"subject {data.subject}, {data.acquisition}: CAM [0, 1] by network",
    )


@dataclass
class Cohort:
    """Group means of one run: ``means`` group -> ``(X, Y, Z)`` mean [0, 1] CAM, ``counts`` group ->
    number of acquisitions, ``background`` the ``(X, Y, Z)`` mean FA over all of them, ``reference``
    the first FA image (its grid and header)."""

    run: CAMRun
    means: dict[str, np.ndarray]
    counts: dict[str, int]
    background: np.ndarray
    reference: nib.Nifti1Image


def load_cohort(run_dir: str | os.PathLike, split: str | None = None) -> Cohort:
    """Mean ``_cam01`` map per group and mean FA over a run's acquisitions (one grid required).

    Args:
        run_dir: bundle run folder.
        split: only the summary rows of this split (``train``, ``val``, ``test``); default all.

    Raises:
        InputError: no acquisition (in ``split``), two acquisitions on different grids (shape, or
            affine beyond 1e-4 mm: register to a template first), a missing or unreadable file.
    """
    run = read_cam_run(run_dir)
    table = run.summary
    if split is not None:
        if "split" not in table.columns:
            raise InputError("no 'split' column to select from", run.run_dir / "cam" / "summary.csv")
        table = table[table["split"] == split]
        if table.empty:
            raise InputError(f"no acquisition of split {split!r}", run.run_dir / "cam" / "summary.csv")
    table = table.drop_duplicates(["subject", "acquisition"])
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    fa_sum: np.ndarray | None = None
    reference: tuple[str, nib.Nifti1Image] | None = None
    # running sums in float64: a cohort of HCP-size volumes never has to fit in memory at once
    for _, row in table.iterrows():
        fa_path = run.fa_path(row)
        fa = load_nifti(fa_path, ndim=3)
        name = f"{row['subject']}/{row['acquisition']}"
        if reference is None:
            reference = (name, fa)
        elif not _same_grid(fa, reference[1]):
            raise InputError(
                f"{name} is not on the grid of {reference[0]} ({_grid_text(fa)} vs {_grid_text(reference[1])}): "
                "the subjects do not share a grid; a group mean needs the maps registered to a template first "
                "(real HCP data is in each subject's native space)",
                fa_path,
            )
        cam = _load_cam01(run, row["subject"], row["acquisition"], fa)
        group = row["group"]
        sums[group] = sums[group] + cam if group in sums else cam
        counts[group] = counts.get(group, 0) + 1
        data = np.asarray(fa.dataobj, dtype=np.float64)
        fa_sum = data if fa_sum is None else fa_sum + data
    means = {g: sums[g] / counts[g] for g in sorted(sums)}
    return Cohort(run, means, {g: counts[g] for g in means}, fa_sum / len(table), reference[1])


def cohort_means(run_dir: str | os.PathLike, split: str | None = None) -> dict[str, np.ndarray]:
    """Mean ``_cam01`` map per group over a run's acquisitions: group -> ``(X, Y, Z)`` float64 in [0, 1].

    Groups are sorted by name. See :func:`load_cohort` for the arguments and errors.
    """
    return load_cohort(run_dir, split).means


def write_cohort(data: Cohort, out_png: str | os.PathLike) -> list[Path]:
    """Write the cohort figure and one ``<out>_<group>.nii.gz`` per group mean on the first FA's grid.

    Returns:
        ``[out_png, <out>_<group1>.nii.gz, ...]``; every file is written atomically.
    """
    out_png = Path(out_png)
    stem = out_png.with_suffix("") if out_png.suffix.lower() == ".png" else out_png
    title = ", ".join(f"{g} (n={n})" for g, n in data.counts.items())
    paths = [
        cohort_figure(
            data.means,
            data.background,
            out_png,
            affine=data.reference.affine,
            title=f"{run_labels([data.run])[0]}: mean CAM [0, 1] per group over the mean FA: {title}",
        )
    ]
    for group, mean in data.means.items():
        nii = stem.parent / f"{stem.name}_{safe_name(group)}.nii.gz"
        desc = f"mean CAM [0,1], group {group}, n={data.counts[group]}"
        paths.append(save_nifti_like(mean, data.reference, nii, description=desc))
    return paths


def cohort(run_dir: str | os.PathLike, out_png: str | os.PathLike, split: str | None = None) -> list[Path]:
    """Cohort figure (mean ``_cam01`` per group over the mean FA) and the group means as NIfTI.

    Args:
        run_dir: bundle run folder whose acquisitions share one grid.
        out_png: output PNG; the means go to ``<out_png without .png>_<group>.nii.gz``.
        split: only this split's acquisitions (default all in the summary).

    Returns:
        the paths written, the PNG first.

    Raises:
        InputError: see :func:`load_cohort`; nothing is written then.
    """
    return write_cohort(load_cohort(run_dir, split), out_png)
