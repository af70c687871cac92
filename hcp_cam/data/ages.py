"""Ages as a regression target: reading them from the participants table, and the datalist of a
``task: regression`` run.

A classifier needs age *groups* (:mod:`hcp_cam.data.participants`); a regressor needs each subject's
age in years. The rules for ages that are not one number (decided here, documented in docs/data.md):

- a closed range such as ``25-35`` (HCP's open-access tables give 22-25, 26-30, 31-35) is used at its
  midpoint, with one warning naming the subjects and the widest range: the target then carries an
  error of up to half that width, which bounds the MAE that can be read from such data;
- an open range (``36+``) or an empty cell has no number to regress on: the row is left out with a
  warning (an error with ``strict``), as a row that fits no group is for a classifier;
- anything else (``old``, ``n/a``) is an error naming the line and the subject.

The split is still by subject and stratified: subjects are binned by age into up to four strata of
equal size (``age_8-24``, ...), so that every split spans the age range.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcp_cam.data.datalist import _entry, _relative, check_fold, find_table_and_acquisitions
from hcp_cam.data.dataset_participants import (
    normalise_bids_ids,
    participant_metadata,
)
from hcp_cam.data.participants import _read_table, match_participants, parse_age
from hcp_cam.data.splits import SPLITS, kfold_subjects, split_subjects
from hcp_cam.errors import InputError

__all__ = [
    "AGE_LABEL",
    "MIN_DISTINCT_AGES",
    "read_ages",
    "age_strata",
    "make_regression_datalist",
]

logger = logging.getLogger(__name__)

#: the single "class" name of a regression run (the network's one output)
AGE_LABEL = "age"
#: fewer distinct training ages than this: a regressor can only learn a few levels (warned)
MIN_DISTINCT_AGES = 5
_SUBJECT_ALIASES = ("subject", "subject_id", "participant_id")
_MAX_STRATA = 4
_MIN_PER_STRATUM = 6


def read_ages(path: str | os.PathLike, strict: bool = False) -> pd.DataFrame:
    """Each subject's age in years, for regression.

    Args:
        path: the participants CSV/TSV (read as :func:`hcp_cam.data.read_participants` reads it).
        strict: raise instead of warning when a row has no age or an open range.

    Returns:
        one row per kept subject, in file order: ``subject`` (str), ``age`` (float years; a closed
        range's midpoint) and ``age_range`` (the age text as written).

    Raises:
        InputError: the file is missing or unreadable; no ``subject`` or no ``age`` column (the
            message lists the columns found); an empty or repeated subject; an age that is not a
            number or a range (the message names the line and the subject); with ``strict``, a row
            without a usable age; no row with one.
    """
    path = Path(path)
    table, lines = _read_table(path)
    columns = {str(c).strip().lower(): c for c in table.columns}
    subject_col = next((columns[a] for a in _SUBJECT_ALIASES if a in columns), None)
    age_col = columns.get("age")
    if subject_col is None or age_col is None:
        raise InputError(
            "regression needs a participants table with 'subject' and 'age' columns (a number of years "
            f"per subject); found columns {[str(c) for c in table.columns]}",
            path,
        )
    subjects = table[subject_col].str.strip()
    if (subjects == "").any():
        raise InputError(
            f"empty subject on line(s) {[lines[i] for i in subjects.index[subjects == '']]}", path
        )
    duplicated = sorted(set(subjects[subjects.duplicated()]))
    if duplicated:
        raise InputError(f"subjects listed more than once: {duplicated}", path)

    records, unusable, ranges = [], [], []
    for i, subject in subjects.items():
        text = str(table.at[i, age_col]).strip()
        try:
            parsed = parse_age(text)
        except ValueError as e:
            raise InputError(f"line {lines[i]}, subject {subject}: age {e}", path) from e
        if parsed is None or math.isinf(parsed[1]):
            unusable.append(f"{subject} (age {text or 'missing'})")
            continue
        low, high = parsed
        if high > low:
            ranges.append((high - low, f"{subject} ({text})"))
        records.append((subject, (low + high) / 2.0, text))
    if unusable:
        message = (
            f"{len(unusable)} subject(s) have no age in years to regress on (empty, or an open range): "
            f"{_preview(unusable)}"
        )
        if strict:
            raise InputError(message, path)
        logger.warning("%s: %s; left out", path, message)
    if ranges:
        widest = max(ranges)
        logger.warning(
            "%s: %d subject(s) have an age range, used at its midpoint (%s); the widest spans %g years (%s), "
            "so their target is uncertain by up to half that",
            path,
            len(ranges),
            _preview([r for _, r in ranges], 5),
            widest[0],
            widest[1],
        )
    if not records:
        raise InputError("no subject has an age in years", path)
    out = pd.DataFrame.from_records(records, columns=["subject", "age", "age_range"])
    return out.astype({"subject": str, "age": float, "age_range": str})


def age_strata(subjects: Sequence[str], ages: Sequence[float], n_strata: int | None = None) -> list[str]:
    """Bin subjects by age into strata of (nearly) equal size, for a stratified split.

    Args:
        subjects: subject ids (ties in age are ordered by id, so the bins are deterministic).
        ages: their ages in years.
        n_strata: number of bins; default ``clip(n // 6, 1, 4)`` (at least 6 subjects per bin, so
            that a 5-fold or hold-out split finds every bin in every split).

    Returns:
        one name per subject, ``age_<low>-<high>`` with the bin's youngest and oldest age.
    """
    n = len(subjects)
    if n_strata is None:
        n_strata = int(np.clip(n // _MIN_PER_STRATUM, 1, _MAX_STRATA))
    order = sorted(range(n), key=lambda i: (float(ages[i]), str(subjects[i])))
    names = [""] * n
    for chunk in np.array_split(np.asarray(order, dtype=int), max(1, min(n_strata, n))):
        lo, hi = float(ages[chunk[0]]), float(ages[chunk[-1]])
        for i in chunk:
            names[int(i)] = f"age_{lo:g}-{hi:g}"
    return names


def make_regression_datalist(
    dataset_dir: str | os.PathLike,
    participants: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    num_folds: int | None = None,
    fold: int | None = None,
    strict: bool = False,
    layout: str = "auto",
    index_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The datalist of a regression run: every subject with an age, split by subject.

    The same dataset layouts, participants table and entries as :func:`hcp_cam.data.make_datalist`
    (``training``/``validation``/``test`` entries with paths relative to ``dataset_dir``; ``layout``
    and ``index_dir`` as there), with ``task: "regression"``, ``labels:
    ["age"]``, each entry's ``label`` and ``age`` the age in years and its ``group`` the age stratum
    of the split (:func:`age_strata`); ``groups`` maps each stratum to its ``[low, high]``.

    Raises:
        InputError: see :func:`read_ages`; no subject with both data and an age; a split the strata
            cannot fill.
        ConfigError: ``fold`` without ``num_folds`` or out of range.
    """
    dataset_dir = Path(dataset_dir)
    check_fold(fold, num_folds)
    table_path, resolved, acquisitions = find_table_and_acquisitions(
        dataset_dir, layout, participants, index_dir
    )
    ages = read_ages(table_path, strict=strict)
    # BIDS subjects are sub-<label>: IDs without the prefix are given it, as for a classifier
    bids_ids = resolved in ("bids", "qsiprep") or (
        bool(acquisitions) and all(a.subject.startswith("sub-") for a in acquisitions)
    )
    if bids_ids:
        ages = normalise_bids_ids(ages, table_path)
    acquisitions, subjects = match_participants(acquisitions, ages)
    metadata = participant_metadata(table_path, bids_ids=bids_ids)
    subjects = subjects.assign(group=age_strata(list(subjects["subject"]), list(subjects["age"])))
    strata = list(dict.fromkeys(sorted(subjects["group"], key=lambda g: float(g[4:].split("-")[0]))))
    if num_folds is None:
        split = split_subjects(subjects, val_fraction, test_fraction, seed=seed, groups=strata)
    else:
        split = kfold_subjects(subjects, num_folds, seed=seed, val_fraction=val_fraction, groups=strata)[fold]
    rows = subjects.set_index("subject")
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for acq in acquisitions:
        row = rows.loc[acq.subject]
        # the classifier's entry (paths, computed masks, BIDS entities, metadata) with the age as label
        entry = _entry(acq, {**row.to_dict(), "label": 0}, dataset_dir, metadata.get(acq.subject))
        entry.update(label=float(row["age"]))
        by_subject.setdefault(acq.subject, []).append(entry)
    bounds = subjects.groupby("group")["age"].agg(["min", "max"])
    datalist: dict[str, Any] = {
        "name": dataset_dir.resolve().name,
        "description": f"diffusion acquisitions ({resolved} layout) with each subject's age in years, "
        "split by subject",
        "layout": resolved,
        "task": "regression",
        "labels": [AGE_LABEL],
        "groups": {g: [float(bounds.at[g, "min"]), float(bounds.at[g, "max"])] for g in strata},
        "participants": _relative(table_path, dataset_dir),
        "seed": seed,
        "num_folds": num_folds,
        "fold": fold,
        "val_fraction": val_fraction,
        "test_fraction": None if num_folds is not None else test_fraction,
        "age_range": [float(subjects["age"].min()), float(subjects["age"].max())],
    }
    for name in SPLITS:
        datalist[name] = [e for s in split[name] for e in by_subject[s]]
    datalist.update(
        numTraining=len(datalist["training"]),
        numValidation=len(datalist["validation"]),
        numTest=len(datalist["test"]),
    )
    train_ages = {e["subject"]: e["age"] for e in datalist["training"]}
    if len(set(train_ages.values())) < MIN_DISTINCT_AGES:
        logger.warning(
            "regression: the %d training subjects have only %d distinct ages (%s); a regressor learns little "
            "more than those levels (fewer than %d)",
            len(train_ages),
            len(set(train_ages.values())),
            ", ".join(f"{a:g}" for a in sorted(set(train_ages.values()))),
            MIN_DISTINCT_AGES,
        )
    return datalist


def _preview(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"
