"""The cohort of a group analysis: every subject's FA and CAM, each from the run that held it out.

A bundle run folder (``output_dir``) holds ``datalist.json`` (the split and the grouping rule:
``labels`` and ``groups``) and, after inference, ``cam/summary.csv`` (one row per acquisition with
its ``split``, ``subject``, ``acquisition``, ``group`` and ``fa`` path) and
``cam/<subject>/<acquisition>_cam.nii.gz``. Given the k runs of a cross-validation, each subject's
maps come from the run where it was a *test* subject: out-of-fold maps only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.io import recorded_path

__all__ = ["SubjectMaps", "Cohort", "collect_cohort"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubjectMaps:
    """One acquisition of the cohort.

    Attributes:
        subject, acquisition, group: as in the run's datalist.
        run_dir: the run in which the subject was a test subject.
        fa: its FA map (native grid), as the run used it.
        cam: its CAM volume (same grid).
        key: file stem in the group outputs, ``<subject>`` or ``<subject>_<acquisition>`` when the
            subject has several acquisitions.
    """

    subject: str
    acquisition: str
    group: str
    run_dir: Path
    fa: Path
    cam: Path
    key: str = ""


@dataclass
class Cohort:
    """What :func:`collect_cohort` found.

    Attributes:
        labels: the group names in the order of the grouping rule (class 0 first).
        groups: the rule, ``{name: [low, high]}`` in years as the runs recorded it.
        maps: one entry per acquisition, sorted by subject then acquisition.
        left_out: subjects of the runs' datalists that no run held out (no out-of-fold map).
        cam_class: the class whose CAM the runs wrote (``cam/summary.csv``'s ``cam_class``).
        runs: the run folders, as given (duplicates dropped).
    """

    labels: list[str]
    groups: dict
    maps: list[SubjectMaps]
    left_out: list[str] = field(default_factory=list)
    cam_class: str = ""
    runs: list[Path] = field(default_factory=list)

    @property
    def subjects(self) -> list[str]:
        return sorted({m.subject for m in self.maps})

    def group_of(self) -> dict[str, str]:
        """subject -> group."""
        return {m.subject: m.group for m in self.maps}


def _read_datalist(run: Path) -> dict:
    path = run / "datalist.json"
    if not run.is_dir():
        raise InputError("not a folder (expected a bundle run folder, its output_dir)", run)
    if not path.is_file():
        raise InputError("not a run folder: no datalist.json (give the output_dir of a bundle run)", run)
    try:
        datalist = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"unreadable datalist ({e})", path) from e
    for key in ("labels", "groups", "test"):
        if key not in datalist:
            raise InputError(f"the datalist has no {key!r} key (found {sorted(datalist)})", path)
    return datalist


def _read_summary(run: Path) -> pd.DataFrame:
    path = run / "cam" / "summary.csv"
    if not path.is_file():
        raise InputError(
            "the run holds no CAM volumes (cam/summary.csv missing): run the bundle's inference first", run
        )
    try:
        table = pd.read_csv(path, dtype={"subject": str, "acquisition": str, "group": str, "split": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(f"unreadable CAM summary ({e})", path) from e
    missing = {"split", "subject", "acquisition", "fa"} - set(table.columns)
    if missing:
        raise InputError(f"the CAM summary lacks the columns {sorted(missing)}", path)
    return table


def collect_cohort(run_dirs: Sequence[str | os.PathLike]) -> Cohort:
    """Find every subject's out-of-fold FA and CAM in ``run_dirs``.

    Raises:
        InputError: a folder that is not a run, a run without CAM volumes (no summary, or a test
            subject's CAM or FA file missing).
        ConfigError: no run given, runs with different grouping rules or CAM classes, or a subject
            held out by two runs.
    """
    runs: list[Path] = []
    for r in run_dirs:
        p = Path(r)
        if p.resolve() not in [q.resolve() for q in runs]:
            runs.append(p)
    if not runs:
        raise ConfigError("give at least one run folder")
    first: tuple[Path, list, dict] | None = None
    cam_classes: dict[str, Path] = {}
    held_out: dict[tuple[str, str], SubjectMaps] = {}
    everyone: set[str] = set()
    for run in runs:
        datalist = _read_datalist(run)
        rule = (list(datalist["labels"]), dict(datalist["groups"]))
        if first is None:
            first = (run, *rule)
        elif rule != (first[1], first[2]):
            raise ConfigError(
                f"runs trained with different grouping rules: {first[0]} has {_rule_text(*first[1:])}, "
                f"{run} has {_rule_text(*rule)}"
            )
        summary = _read_summary(run)
        test = summary[summary["split"] == "test"]
        if test.empty:
            raise InputError("the run holds no CAM volume of a test subject (cam/summary.csv)", run)
        for cls in test.get("cam_class", pd.Series(dtype=str)).dropna().unique():
            cam_classes.setdefault(str(cls), run)
        rows = {(str(r.subject), str(r.acquisition)): r for r in test.itertuples(index=False)}
        for split in ("training", "validation", "test"):
            everyone.update(str(e["subject"]) for e in datalist.get(split, []))
        for entry in datalist["test"]:
            sid, acq = str(entry["subject"]), str(entry["acquisition"])
            row = rows.get((sid, acq))
            if row is None:
                logger.warning(
                    "%s: test subject %s/%s has no CAM volume in cam/summary.csv; left out", run, sid, acq
                )
                continue
            cam = run / "cam" / sid / f"{acq}_cam.nii.gz"
            if not cam.is_file():
                raise InputError(
                    f"CAM volume of test subject {sid}/{acq} not found (run without CAM volumes?)", cam
                )
            fa = recorded_path(str(row.fa), run)
            if not fa.is_file():
                raise InputError(f"FA map of {sid}/{acq} (from {run / 'cam' / 'summary.csv'}) not found", fa)
            if (sid, acq) in held_out:
                raise ConfigError(
                    f"subject {sid}/{acq} is a test subject of both {held_out[(sid, acq)].run_dir} and {run}: "
                    "give the folds of one cross-validation (each subject held out once)"
                )
            held_out[(sid, acq)] = SubjectMaps(sid, acq, str(entry["group"]), run, fa, cam)
    if len(cam_classes) > 1:
        what = ", ".join(f"{c!r} in {r}" for c, r in cam_classes.items())
        raise ConfigError(
            f"the runs' CAM volumes are of different classes ({what}); run inference with one cam_class"
        )
    assert first is not None
    n_acq: dict[str, int] = {}
    for sid, _ in held_out:
        n_acq[sid] = n_acq.get(sid, 0) + 1
    maps = [
        SubjectMaps(
            **{**m.__dict__, "key": m.subject if n_acq[m.subject] == 1 else f"{m.subject}_{m.acquisition}"}
        )
        for _, m in sorted(held_out.items())
    ]
    covered = {m.subject for m in maps}
    left_out = sorted(everyone - covered)
    if left_out:
        logger.warning(
            "%d subject(s) were never a test subject of the runs given and are left out: %s",
            len(left_out),
            ", ".join(left_out),
        )
    return Cohort(
        labels=first[1],
        groups=first[2],
        maps=maps,
        left_out=left_out,
        cam_class=next(iter(cam_classes), ""),
        runs=runs,
    )


def _rule_text(labels: list, groups: dict) -> str:
    def bounds(name: str) -> str:
        lo, hi = (list(groups[name]) + [None, None])[:2]
        return f"{lo:g}+" if hi is None or hi == float("inf") else f"{lo:g}-{hi:g}"

    return ",".join(f"{name}:{bounds(name)}" if name in groups else str(name) for name in labels)
