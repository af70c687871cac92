"""The network comparison table: one row per architecture, mean ± std over cross-validation folds.

Each run directory is a bundle output folder holding

- ``config.json``: at least the architecture (``arch``; ``network`` or ``network_name`` are read
  too) and, for cross-validation, ``fold``; ``num_folds`` and ``seed`` are kept when present;
- ``metrics/history.csv``: per-epoch ``val_accuracy`` (slice level), from which the best
  validation accuracy is taken;
- ``metrics/test_metrics.json``: ``subject_accuracy``, ``slice_accuracy``, ``roc_auc`` (subject
  level), ``majority_baseline``, ``n_subjects``, ... as written by
  :func:`hcp_cam.training.metrics.subject_and_slice_metrics`.

Runs that share an architecture are folds of one row. Missing metric keys or columns become NaN
(and are left out of the means); missing files are an :class:`~hcp_cam.errors.InputError`.

Regression runs (``task: regression`` in ``config.json``) are rows of their own with their own
columns (:data:`REGRESSION_COLUMNS`): the best validation subject MAE (``val_subject_mae`` of the
history), the test subject MAE beside the mean-age baseline and their ratio, Pearson r, R^2, the
slice MAE, and the CAM scores of the test subjects above the middle of the age range (the ones the
graded effect marks most). Classification runs whose evaluation fitted a calibration on the
validation subjects get a column of calibrated subject accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hcp_cam.errors import InputError
from hcp_cam.io import atomic_path
from hcp_cam.training.metrics import summarize_folds

__all__ = [
    "read_run",
    "compare_runs",
    "format_markdown",
    "write_comparison",
    "FORMATS",
    "SUMMARY_COLUMNS",
    "REGRESSION_COLUMNS",
]

logger = logging.getLogger(__name__)

FORMATS = ("csv", "md")
ARCH_KEYS = ("arch", "network", "network_name", "net")
# (table column stem, source key in a run record, Markdown header)
SUMMARY_COLUMNS = (
    ("val_accuracy", "best_val_accuracy", "Validation accuracy (slices)"),
    ("test_slice_accuracy", "slice_accuracy", "Test accuracy (slices)"),
    ("test_subject_accuracy", "subject_accuracy", "Test accuracy (subjects)"),
    ("test_subject_auc", "roc_auc", "Test AUC (subjects)"),
    ("majority_baseline", "majority_baseline", "Majority baseline"),
    ("pointing_game", "pointing_game", "CAM pointing game"),
    ("peak_distance", "peak_distance", "CAM peak to region (mm)"),
    ("energy_pointing_game", "energy_pointing_game", "CAM energy in region"),
    ("energy_baseline", "energy_baseline", "Energy of a flat map"),
)
# after the subject accuracy, where any run has it (evaluations with a validation calibration)
CALIBRATED_COLUMN = (
    "test_subject_accuracy_calibrated",
    "calibrated_subject_accuracy",
    "Test accuracy (subjects, calibrated)",
)
# after it, where any run has 3+ classes (for two, the subject accuracy of a balanced split says it)
BALANCED_COLUMN = ("test_balanced_accuracy", "balanced_accuracy", "Test balanced accuracy (subjects)")
_OPTIONAL_COLUMNS = (CALIBRATED_COLUMN, BALANCED_COLUMN)
REGRESSION_COLUMNS = (
    ("val_subject_mae", "best_val_subject_mae", "Validation MAE (subjects, y)"),
    ("test_subject_mae", "mae", "Test MAE (subjects, y)"),
    ("mean_age_baseline", "mean_age_baseline", "Mean-age baseline MAE (y)"),
    ("mae_ratio", "mae_ratio", "MAE / baseline"),
    ("test_pearson_r", "pearson_r", "Test r (subjects)"),
    ("test_r2", "r2", "Test R^2 (subjects)"),
    ("test_slice_mae", "slice_mae", "Test MAE (slices, y)"),
    ("pointing_game", "pointing_game", "CAM pointing game (upper age half)"),
    ("peak_distance", "peak_distance", "CAM peak to region (mm)"),
    ("energy_pointing_game", "energy_pointing_game", "CAM energy in region"),
    ("energy_baseline", "energy_baseline", "Energy of a flat map"),
)
_REGRESSION_KEYS = ("mae", "rmse", "pearson_r", "r2", "mean_age_baseline", "mae_ratio", "slice_mae")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not valid JSON: {e}", path) from e
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}", path)
    return obj


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_run(run_dir: str | os.PathLike) -> dict:
    """Read one run directory into a flat record.

    Returns:
        dict with ``run_dir``, ``arch``, ``fold`` (``None`` if unknown), ``num_folds``, ``seed``,
        ``best_val_accuracy`` (max of the history's ``val_accuracy``), and the test metrics
        ``slice_accuracy``, ``subject_accuracy``, ``roc_auc``, ``precision``, ``recall``, ``f1``,
        ``majority_baseline``, ``n_subjects``, ``n_slices`` (NaN where absent).

    Raises:
        InputError: the folder or one of its three files is missing or unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run directory not found", run_dir)
    config = _read_json(run_dir / "config.json")
    arch = next((config[k] for k in ARCH_KEYS if isinstance(config.get(k), str)), None)
    if arch is None:
        arch = run_dir.name
        logger.warning(
            "%s: no architecture key %s; using the folder name %r", run_dir / "config.json", ARCH_KEYS, arch
        )
    history_path = run_dir / "metrics" / "history.csv"
    if not history_path.is_file():
        raise InputError("file not found", history_path)
    try:
        history = pd.read_csv(history_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read as a CSV table: {e}", history_path) from e
    if str(config.get("task", "classification")) == "regression":
        return _read_regression_run(run_dir, config, str(arch), history)
    if "val_accuracy" in history:
        best_val = float(pd.to_numeric(history["val_accuracy"], errors="coerce").max())
    else:
        logger.warning("%s: no 'val_accuracy' column", history_path)
        best_val = math.nan
    test = _read_json(run_dir / "metrics" / "test_metrics.json")
    record = {
        "run_dir": str(run_dir),
        "arch": str(arch),
        "fold": config.get("fold"),
        "num_folds": config.get("num_folds"),
        "seed": config.get("seed"),
        "best_val_accuracy": best_val,
    }
    keys = ("slice_accuracy", "subject_accuracy", "roc_auc", "precision", "recall", "f1", "majority_baseline")
    for key in keys + ("n_subjects", "n_slices"):
        record[key] = _number(test.get(key))
    record["task"] = "classification"
    record["calibrated_subject_accuracy"] = _number(test.get("calibrated_subject_accuracy"))
    many = len(test.get("labels") or []) > 2
    record["balanced_accuracy"] = _number(test.get("balanced_accuracy")) if many else math.nan
    record.update(_localization(run_dir / "cam" / "localization.csv"))
    missing = [k for k in keys if k not in test]
    if missing:
        logger.warning(
            "%s: missing keys %s (left out of the means)", run_dir / "metrics/test_metrics.json", missing
        )
    return record


def _read_regression_run(run_dir: Path, config: dict, arch: str, history: pd.DataFrame) -> dict:
    """The record of a regression run (see :func:`read_run`)."""
    if "val_subject_mae" in history:
        best_val = float(pd.to_numeric(history["val_subject_mae"], errors="coerce").min())
    else:
        logger.warning("%s: no 'val_subject_mae' column", run_dir / "metrics" / "history.csv")
        best_val = math.nan
    test = _read_json(run_dir / "metrics" / "test_metrics.json")
    record = {
        "run_dir": str(run_dir),
        "arch": arch,
        "task": "regression",
        "fold": config.get("fold"),
        "num_folds": config.get("num_folds"),
        "seed": config.get("seed"),
        "best_val_subject_mae": best_val,
    }
    for key in _REGRESSION_KEYS + ("n_subjects", "n_slices"):
        record[key] = _number(test.get(key))
    missing = [k for k in _REGRESSION_KEYS if k not in test]
    if missing:
        logger.warning(
            "%s: missing keys %s (left out of the means)", run_dir / "metrics/test_metrics.json", missing
        )
    mid = None
    datalist = run_dir / "datalist.json"
    if datalist.is_file():
        ages = _read_json(datalist).get("age_range")
        mid = float(np.mean(ages)) if isinstance(ages, list) and len(ages) == 2 else None
    record.update(_localization(run_dir / "cam" / "localization.csv", age_above=mid))
    return record


def _localization(path: Path, age_above: float | None = None) -> dict[str, float]:
    """Mean pointing game and energy share over the test subjects of the group the CAM is for (the
    group that carries the planted effect), or, for a regressor (``age_above``: the middle of the
    age range), over the subjects older than that; NaN when the run has no CAM localization table."""
    out = {k: math.nan for k in ("pointing_game", "peak_distance", "energy_pointing_game", "energy_baseline")}
    if not path.is_file():
        return out
    table = pd.read_csv(path, dtype={"subject": str})
    if age_above is not None and "age" in table:
        rows = table[pd.to_numeric(table["age"], errors="coerce") > age_above]
    elif {"group", "cam_class"} <= set(table):
        rows = table[table["group"] == table["cam_class"]]
    else:
        rows = table
    if "split" in rows and (rows["split"] == "test").any():  # `--cam_split all` maps training subjects too
        rows = rows[rows["split"] == "test"]
    for key in out:
        if key in rows and len(rows):
            out[key] = float(pd.to_numeric(rows[key].astype(float), errors="coerce").mean())
    return out


def compare_runs(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Summarise runs into one row per architecture, in order of first appearance.

    Args:
        run_dirs: bundle output folders; runs with the same ``arch`` are its folds.

    Returns:
        DataFrame with ``arch``, ``n_folds``, ``folds`` (e.g. ``"0;1"``), then ``<stem>_mean`` and
        ``<stem>_std`` (sample std over folds, NaN with one fold) for ``val_accuracy`` (best
        validation slice accuracy), ``test_slice_accuracy``, ``test_subject_accuracy``,
        ``test_subject_auc``, ``majority_baseline``, and ``n_test_subjects`` (summed over folds).

    Raises:
        InputError: no run given, a run folder given twice, or a missing or unreadable file.
    """
    if not run_dirs:
        raise InputError("no run directory given")
    resolved = [Path(d).resolve() for d in run_dirs]
    dup = {str(d) for d in resolved if resolved.count(d) > 1}
    if dup:
        raise InputError(f"run directories given more than once: {sorted(dup)}")
    records = pd.DataFrame([read_run(d) for d in run_dirs])
    tasks = list(pd.unique(records["task"]))
    rows = []
    for (task, arch), runs in records.groupby(["task", "arch"], sort=False):
        folds = [
            str(f) for f in runs["fold"] if f is not None and not (isinstance(f, float) and math.isnan(f))
        ]
        if len(set(folds)) < len(folds):
            logger.warning("%s: several runs share a fold (%s); each counts as one fold", arch, folds)
        row = {"arch": arch, "n_folds": len(runs), "folds": ";".join(folds)}
        if tasks != ["classification"]:
            row = {"arch": arch, "task": task, **{k: v for k, v in row.items() if k != "arch"}}
        for stem, key, _ in _columns(task, records[records["task"] == task]):
            s = summarize_folds(runs[key])
            row[f"{stem}_mean"], row[f"{stem}_std"] = s["mean"], s["std"]
        row["n_test_subjects"] = float(np.nansum(runs["n_subjects"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _columns(task: str, records: pd.DataFrame) -> tuple[tuple[str, str, str], ...]:
    """The table columns of a task's rows: :data:`REGRESSION_COLUMNS`, or :data:`SUMMARY_COLUMNS`
    with the calibrated and the balanced accuracy after the subject accuracy where any run has them."""
    if task == "regression":
        return REGRESSION_COLUMNS
    return _with_optional(
        SUMMARY_COLUMNS,
        lambda c: c[1] in records and bool(np.isfinite(pd.to_numeric(records[c[1]], errors="coerce")).any()),
    )


def _with_optional(columns: tuple, present: Callable[[tuple], bool]) -> tuple[tuple[str, str, str], ...]:
    """``columns`` with those of :data:`_OPTIONAL_COLUMNS` that ``present(column)`` after the subject accuracy."""
    at = [c[0] for c in columns].index("test_subject_accuracy") + 1
    return columns[:at] + tuple(c for c in _OPTIONAL_COLUMNS if present(c)) + columns[at:]


def _mean_std(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """The comparison table as a Markdown pipe table with ``mean ± std`` cells.

    A metric with a single fold shows its value alone; one missing in every fold shows ``n/a``.
    Regression rows (a ``task`` column) make a second table with :data:`REGRESSION_COLUMNS`.
    """
    tasks = list(pd.unique(table["task"])) if "task" in table else ["classification"]
    parts = []
    for task in tasks:
        rows = table[table["task"] == task] if "task" in table else table
        if task == "regression":
            columns = REGRESSION_COLUMNS
        else:
            columns = _with_optional(
                tuple(c for c in SUMMARY_COLUMNS if f"{c[0]}_mean" in rows),
                lambda c, rows=rows: f"{c[0]}_mean" in rows and bool(rows[f"{c[0]}_mean"].notna().any()),
            )
        parts.append(_markdown_rows(rows, columns, digits))
    return "\n".join(parts)


def _markdown_rows(rows: pd.DataFrame, columns: Sequence[tuple[str, str, str]], digits: int) -> str:
    headers = ["Network"] + [h for _, _, h in columns] + ["Folds"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    for _, row in rows.iterrows():
        cells = [str(row["arch"])]
        cells += [_mean_std(row[f"{s}_mean"], row[f"{s}_std"], digits) for s, _, _ in columns]
        cells.append(str(int(row["n_folds"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(
    table: pd.DataFrame, prefix: str | os.PathLike, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """Write ``PREFIX.csv`` (numeric columns) and/or ``PREFIX.md`` atomically; return the paths."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(f"unknown table format(s) {unknown}; choose from {FORMATS}")
    paths = []
    for fmt in formats:
        path = Path(f"{os.fspath(prefix)}.{fmt}")
        with atomic_path(path) as tmp:
            if fmt == "csv":
                table.to_csv(tmp, index=False)
            else:
                tmp.write_text(format_markdown(table), encoding="utf-8")
        paths.append(path)
    return paths
