"""The MONAI datalist of a dataset: acquisitions, labels and a subject-level split, as JSON.

The datalist follows MONAI's decathlon format (``training``/``validation``/``test`` lists of
dicts) with paths relative to the dataset folder, so it is read with
``monai.data.load_decathlon_datalist(path, data_list_key=..., base_dir=dataset_dir)``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hcp_cam.data.dataset_participants import (
    find_participants_table,
    participant_metadata,
    read_dataset_participants,
)
from hcp_cam.data.discovery import Acquisition
from hcp_cam.data.layouts import find_acquisitions, resolve_layout
from hcp_cam.data.participants import DEFAULT_GROUPS, AgeGroups, match_participants, parse_groups
from hcp_cam.data.splits import SPLITS, kfold_subjects, split_subjects
from hcp_cam.errors import ConfigError, InputError
from hcp_cam.io import write_json_atomic

__all__ = [
    "PATH_KEYS",
    "find_participants",
    "make_datalist",
    "write_datalist",
    "load_datalist",
    "split_summary",
    "check_fold",
    "find_table_and_acquisitions",
]

# the keys of an entry that hold paths (relative to the dataset folder)
PATH_KEYS = ("dwi", "bvals", "bvecs", "mask", "fa")
_PARTICIPANT_NAMES = ("participants.csv", "participants.tsv")


def find_participants(dataset_dir: str | os.PathLike) -> Path:
    """The dataset's ``participants.csv`` or ``participants.tsv``.

    Raises:
        InputError: neither exists, or both do (which one is meant would be a guess).
    """
    dataset_dir = Path(dataset_dir)
    found = [dataset_dir / n for n in _PARTICIPANT_NAMES if (dataset_dir / n).is_file()]
    if not found:
        raise InputError(f"no participants table: expected {' or '.join(_PARTICIPANT_NAMES)}", dataset_dir)
    if len(found) > 1:
        raise InputError(f"both {' and '.join(_PARTICIPANT_NAMES)} exist; pass the one to use", dataset_dir)
    return found[0]


def make_datalist(
    dataset_dir: str | os.PathLike,
    participants: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    num_folds: int | None = None,
    fold: int | None = None,
    groups: str | Mapping[str, Sequence[float]] | AgeGroups | None = DEFAULT_GROUPS,
    strict: bool = False,
    layout: str = "auto",
    index_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Discover a dataset, label its subjects by age group and split them by subject.

    Every acquisition of a subject lands in the split of its subject. With ``num_folds`` the
    test split is fold ``fold`` of a stratified k-fold (``test_fraction`` is then unused) and the
    validation split is carved from the other folds.

    Args:
        dataset_dir: the dataset folder (see :func:`hcp_cam.data.layouts.find_acquisitions`).
        participants: the participants table; by default ``participants.csv`` or
            ``participants.tsv`` in ``dataset_dir`` (for derivatives, also in the raw BIDS dataset
            that holds them).
        val_fraction: share of each group for validation.
        test_fraction: share of each group for test (hold-out split only).
        seed: the split's seed.
        num_folds: number of folds for cross-validation, or ``None`` for a hold-out split.
        fold: which fold is the test split, ``0 <= fold < num_folds`` (required with ``num_folds``).
        groups: the age groups (see :func:`hcp_cam.data.parse_groups`).
        strict: raise on participants that fit no age group instead of leaving them out.
        layout: one of :data:`hcp_cam.data.layouts.DATASET_LAYOUTS` (``auto`` detects it).
        index_dir: where pybids keeps the index of a BIDS dataset; ``None`` indexes in memory.

    Returns:
        a JSON-ready dict: ``training``, ``validation`` and ``test`` lists of entries, each with
        ``subject``, ``acquisition``, ``dwi``, ``bvals``, ``bvecs`` and ``mask`` (left out where
        the layout has none; paths relative to ``dataset_dir``, ``/``-separated), ``label`` (int),
        ``group`` and ``age`` (years, ``None`` where unknown); where they apply ``fa`` (a given FA
        map), ``compute_mask`` (true: no mask in the dataset, one is computed), ``entities`` (BIDS
        session/acq/dir/run) and ``participant`` (the table's other columns); plus ``layout``,
        ``labels`` (group names in label order), ``groups`` (``{name: [low, high]}``), ``seed``, ``num_folds``, ``fold``,
        ``val_fraction``, ``test_fraction``, ``participants`` (the table's path relative to
        ``dataset_dir`` where it lies inside) and the counts ``numTraining``, ``numValidation``,
        ``numTest``.

    Raises:
        InputError: no data, no participants table, or a bad table (see
            :func:`read_participants`); no subject both in the table and on disk; a split that
            would leave a group out (see :func:`split_subjects`).
        ConfigError: ``fold`` without ``num_folds`` or out of range; invalid ``groups``.
    """
    dataset_dir = Path(dataset_dir)
    groups = parse_groups(groups)
    check_fold(fold, num_folds)
    table_path, resolved, acquisitions = find_table_and_acquisitions(
        dataset_dir, layout, participants, index_dir
    )
    table, bids_ids = read_dataset_participants(table_path, resolved, acquisitions, groups, strict)
    acquisitions, subjects = match_participants(acquisitions, table)
    metadata = participant_metadata(table_path, bids_ids=bids_ids)

    if num_folds is None:
        split = split_subjects(subjects, val_fraction, test_fraction, seed=seed, groups=groups.names)
    else:
        split = kfold_subjects(
            subjects, num_folds, seed=seed, val_fraction=val_fraction, groups=groups.names
        )[fold]

    rows = subjects.set_index("subject")
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for acq in acquisitions:
        entry = _entry(acq, rows.loc[acq.subject], dataset_dir, metadata.get(acq.subject))
        by_subject.setdefault(acq.subject, []).append(entry)
    datalist: dict[str, Any] = {
        "name": dataset_dir.resolve().name,
        "description": f"diffusion acquisitions ({resolved} layout) labelled by age group, split by subject",
        "layout": resolved,
        "labels": list(groups.names),
        "groups": groups.as_dict(),
        "participants": _relative(table_path, dataset_dir),
        "seed": seed,
        "num_folds": num_folds,
        "fold": fold,
        "val_fraction": val_fraction,
        "test_fraction": None if num_folds is not None else test_fraction,
    }
    for name in SPLITS:
        datalist[name] = [e for s in split[name] for e in by_subject[s]]
    datalist.update(
        numTraining=len(datalist["training"]),
        numValidation=len(datalist["validation"]),
        numTest=len(datalist["test"]),
    )
    return datalist


def check_fold(fold: int | None, num_folds: int | None) -> None:
    """Refuse a ``fold`` without ``num_folds`` or outside ``0..num_folds-1`` (:class:`ConfigError`)."""
    if fold is not None and num_folds is None:
        raise ConfigError("fold is given without num_folds")
    if num_folds is not None and (fold is None or not 0 <= fold < num_folds):
        raise ConfigError(f"with num_folds={num_folds}, fold must be one of 0..{num_folds - 1}, got {fold}")


def find_table_and_acquisitions(
    dataset_dir: Path,
    layout: str,
    participants: str | os.PathLike | None,
    index_dir: str | os.PathLike | None,
) -> tuple[Path, str, list[Acquisition]]:
    """The participants table (given, or the layout's), the resolved layout and its acquisitions.

    The layout is resolved from names first, so a wrong folder fails before any (pybids) index.
    """
    resolved = resolve_layout(dataset_dir, layout)
    table_path = (
        Path(participants) if participants is not None else find_participants_table(dataset_dir, resolved)
    )
    resolved, acquisitions = find_acquisitions(dataset_dir, layout, index_dir=index_dir)
    return table_path, resolved, acquisitions


def _entry(acq: Acquisition, row, dataset_dir: Path, metadata: Mapping[str, str] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"subject": acq.subject, "acquisition": acq.acquisition}
    for key in PATH_KEYS:
        path = getattr(acq, key)
        if path is not None:
            entry[key] = _relative(path, dataset_dir)
    if acq.compute_mask:
        entry["compute_mask"] = True
    if acq.entities:
        entry["entities"] = dict(acq.entities)
    age = float(row["age"])
    entry.update(label=int(row["label"]), group=str(row["group"]), age=None if math.isnan(age) else age)
    if metadata:
        entry["participant"] = dict(metadata)
    return entry


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` with ``/`` separators; absolute if it lies outside."""
    path, base = Path(path).resolve(), Path(base).resolve()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def write_datalist(datalist: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the datalist as JSON, atomically (nothing is left under ``path`` on failure)."""
    return write_json_atomic(dict(datalist), path)


def load_datalist(
    path: str | os.PathLike, data_list_key: str = "training", base_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Load one split with MONAI, with absolute paths, keeping the non-path keys as written.

    ``load_decathlon_datalist`` joins ``base_dir`` to every string value that names an existing
    path, which turns a ``subject`` such as ``"100307"`` into ``<base_dir>/100307`` (the subject
    folder exists). This wrapper calls it and puts back every key other than :data:`PATH_KEYS`.

    Args:
        path: the datalist JSON.
        data_list_key: ``"training"``, ``"validation"`` or ``"test"``.
        base_dir: the dataset folder; by default the datalist's folder (MONAI's default).

    Returns:
        the split's entries; ``dwi``, ``bvals``, ``bvecs`` and ``mask`` are absolute paths.

    Raises:
        InputError: the file or the key is missing, or the file is not JSON.
    """
    from monai.data import load_decathlon_datalist  # here: `hcp-cam --help` must not wait for MONAI

    path = Path(path)
    try:
        raw = json.loads(path.read_text())[data_list_key]
        # MONAI indexes the first "test" entry, so an empty split is answered here
        loaded = (
            load_decathlon_datalist(
                path, is_segmentation=False, data_list_key=data_list_key, base_dir=base_dir
            )
            if raw
            else []
        )
    except OSError as e:
        raise InputError(f"cannot read the datalist: {e}", path) from e
    except KeyError as e:
        raise InputError(f"the datalist has no {data_list_key!r} list", path) from e
    except ValueError as e:  # json.JSONDecodeError is one
        raise InputError(f"not a datalist JSON: {e}", path) from e
    return [
        {k: (v if k in PATH_KEYS else r[k]) for k, v in e.items()} for e, r in zip(loaded, raw, strict=True)
    ]


def split_summary(datalist: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Subjects per group in each split: ``{split: {group: n_subjects}}``, groups in label order."""
    labels = list(datalist.get("labels", []))
    out = {}
    for name in SPLITS:
        subjects = {(e["subject"], e["group"]) for e in datalist.get(name, [])}
        out[name] = {g: sum(1 for _, sg in subjects if sg == g) for g in labels}
    return out
