"""Read what a bundle run folder holds, file by file, and say what it lacks.

A run folder (README's table) fills up in stages: ``training`` writes ``config.json``,
``datalist.json``, ``metrics/history.csv`` and ``figures/curves.png``; ``evaluating`` adds
``metrics/test_metrics.json``, ``metrics/test_subject_predictions.csv`` and the ROC/PR/confusion
figures; ``inference`` adds ``cam/`` (``summary.csv``, ``<subject>/<acquisition>_{cam01.nii.gz,
bbox.json, overlay.png}``, ``localization.csv``, ``randomisation_check.json``). A report can be
written after any stage: a missing file is listed in :attr:`RunFolder.missing` with the step that
writes it; a file that exists but cannot be read is an :class:`~hcp_cam.errors.InputError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hcp_cam.errors import InputError

__all__ = ["RUN_FILES", "RunFolder", "read_json", "read_csv", "is_run_folder", "read_run_folder"]

# relative path -> the bundle step that writes it (what the report says when it is missing)
RUN_FILES = {
    "config.json": "training",
    "datalist.json": "training",
    "metrics/history.csv": "training",
    "metrics/test_metrics.json": "evaluating",
    "metrics/test_subject_predictions.csv": "evaluating",
    "cam/summary.csv": "inference",
    "cam/randomisation_check.json": "inference",
}
# written only with a ground-truth region: not counted as missing
OPTIONAL_FILES = ("cam/localization.csv",)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``.

    Raises:
        InputError: not valid JSON, or not an object.
    """
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not valid JSON: {e}", path) from e
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}", path)
    return obj


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV table (``subject`` kept as text: HCP ids may start with 0).

    Raises:
        InputError: not readable as a CSV table.
    """
    try:
        return pd.read_csv(path, dtype={"subject": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read as a CSV table: {e}", path) from e


@dataclass
class RunFolder:
    """The files of one run folder that the report reads; ``None`` where a file is absent.

    Attributes:
        path: the folder.
        config: ``config.json`` (the recorded run configuration).
        datalist: ``datalist.json`` (the subject-level split).
        history: ``metrics/history.csv``.
        metrics: ``metrics/test_metrics.json``.
        predictions: ``metrics/test_subject_predictions.csv``.
        cam: ``cam/summary.csv`` (one row per acquisition that has CAM volumes).
        localization: ``cam/localization.csv``.
        randomisation: ``cam/randomisation_check.json``.
        missing: ``"<file> (written by <step>)"`` for each absent file of :data:`RUN_FILES`.
    """

    path: Path
    config: dict[str, Any] | None = None
    datalist: dict[str, Any] | None = None
    history: pd.DataFrame | None = None
    metrics: dict[str, Any] | None = None
    predictions: pd.DataFrame | None = None
    cam: pd.DataFrame | None = None
    localization: pd.DataFrame | None = None
    randomisation: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    def file(self, relative: str) -> Path:
        return self.path / relative

    @property
    def labels(self) -> list[str]:
        """Class names in index order (``test_metrics.json``, else the datalist's groups)."""
        if self.metrics and isinstance(self.metrics.get("labels"), list):
            return [str(x) for x in self.metrics["labels"]]
        groups = (self.datalist or {}).get("groups")
        return list(groups) if isinstance(groups, dict) else []

    def split_subjects(self) -> dict[str, list[str]]:
        """Subjects of each split in the datalist (sorted, each once)."""
        out = {}
        for split in ("training", "validation", "test"):
            entries = (self.datalist or {}).get(split) or []
            out[split] = sorted({str(e.get("subject")) for e in entries if isinstance(e, dict)})
        return out

    def test_subjects(self) -> list[str]:
        """The held-out subjects: the datalist's test split, else those of the predictions or CAMs."""
        subjects = self.split_subjects()["test"]
        if subjects:
            return subjects
        for table in (self.predictions, self.cam):
            if table is not None and "subject" in table:
                return sorted(set(table["subject"].astype(str)))
        return []


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds any of a run's files (its ``config.json``, ``datalist.json``, ``metrics/``, ``cam/``)."""
    p = Path(path)
    return any((p / name).exists() for name in ("config.json", "datalist.json", "metrics", "cam/summary.csv"))


def read_run_folder(run_dir: str | os.PathLike) -> RunFolder:
    """Read every report input that exists in ``run_dir``.

    Raises:
        InputError: ``run_dir`` is not a folder or holds none of a run's files; a file that exists
            is unreadable (the message names it).
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError("run folder not found", path)
    if not is_run_folder(path):
        raise InputError(
            "not a hcp-cam run folder: none of config.json, datalist.json, metrics/ or cam/summary.csv is in it",
            path,
        )
    run = RunFolder(path=path)
    readers = {
        "config.json": ("config", read_json),
        "datalist.json": ("datalist", read_json),
        "metrics/history.csv": ("history", read_csv),
        "metrics/test_metrics.json": ("metrics", read_json),
        "metrics/test_subject_predictions.csv": ("predictions", read_csv),
        "cam/summary.csv": ("cam", read_csv),
        "cam/localization.csv": ("localization", read_csv),
        "cam/randomisation_check.json": ("randomisation", read_json),
    }
    for relative, (attr, reader) in readers.items():
        f = path / relative
        if f.is_file():
            setattr(run, attr, reader(f))
        elif relative in RUN_FILES:
            run.missing.append(f"{relative} (written by the bundle's {RUN_FILES[relative]})")
    if run.cam is not None and "subject" not in run.cam:
        raise InputError("expected a 'subject' column", path / "cam/summary.csv")
    return run
