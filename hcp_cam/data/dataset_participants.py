"""The participants table of a dataset in any layout: where it is, how its IDs read, what else it holds.

HCP and raw BIDS keep it in the dataset folder; QSIPrep and QSIRecon derivatives do not, and their
table is the raw BIDS dataset's (``<bids>/derivatives/<pipeline>`` -> ``<bids>/participants.tsv``) or
given. BIDS tables need ``participant_id`` and ``age`` (or ``group``); wherever the subjects with data
are ``sub-<label>``, IDs without the prefix are given it. Columns other than subject, age and group
(``sex``, ``handedness``) are kept as each subject's metadata.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hcp_cam.data.discovery import Acquisition
from hcp_cam.errors import InputError

__all__ = [
    "find_participants_table",
    "normalise_bids_ids",
    "participant_metadata",
    "read_dataset_participants",
]

logger = logging.getLogger(__name__)

_PARTICIPANT_NAMES = ("participants.csv", "participants.tsv")
# columns read_participants uses; every other column is kept as the participant's metadata
_KNOWN_COLUMNS = {"subject", "subject_id", "participant_id", "age", "group"}


def find_participants_table(root: str | os.PathLike, layout: str) -> Path:
    """The participants table of a dataset when none is given.

    ``participants.csv`` or ``participants.tsv`` in ``root``; for derivatives (QSIPrep, QSIRecon)
    without one, the table of the raw BIDS dataset that holds them (``<bids>/derivatives/<name>``).

    Raises:
        InputError: none found (the message says how to give one), or both ``.csv`` and ``.tsv``.
    """
    root = Path(root)
    candidates = [root]
    if layout in ("qsiprep", "fa") and root.resolve().parent.name == "derivatives":
        candidates.append(root.resolve().parent.parent)
    for folder in candidates:
        found = [folder / n for n in _PARTICIPANT_NAMES if (folder / n).is_file()]
        if len(found) > 1:
            raise InputError(f"both {' and '.join(_PARTICIPANT_NAMES)} exist; pass the one to use", folder)
        if found:
            if folder != root:
                logger.info("participants table of the raw BIDS dataset: %s", found[0])
            return found[0]
    where = " or in the BIDS dataset two folders up" if len(candidates) > 1 else ""
    raise InputError(
        f"has no participants.csv or participants.tsv{where}; give the table with --participants FILE "
        "(bundle: --participants_file FILE)",
        root,
    )


def normalise_bids_ids(table: pd.DataFrame, path: str | os.PathLike) -> pd.DataFrame:
    """Give every subject ID the ``sub-`` prefix BIDS requires, warning once about those without it.

    Raises:
        InputError: two rows name the same subject once prefixed (``01`` and ``sub-01``).
    """
    subjects = table["subject"].astype(str)
    bare = sorted(s for s in subjects if not s.startswith("sub-"))
    if not bare:
        return table
    shown = ", ".join(bare[:10]) + (f", ... ({len(bare) - 10} more)" if len(bare) > 10 else "")
    logger.warning(
        "%s: %d participant_id(s) lack the BIDS 'sub-' prefix (%s); read as sub-<id>", path, len(bare), shown
    )
    fixed = subjects.where(subjects.str.startswith("sub-"), "sub-" + subjects)
    duplicated = sorted(set(fixed[fixed.duplicated()]))
    if duplicated:
        raise InputError(f"subjects listed more than once (with and without 'sub-'): {duplicated}", path)
    return table.assign(subject=fixed.to_numpy())


def participant_metadata(path: str | os.PathLike, bids_ids: bool = False) -> dict[str, dict[str, str]]:
    """The table's other columns (``sex``, ``handedness``...) per subject, non-empty cells only.

    Args:
        path: the participants table (read as :func:`hcp_cam.data.read_participants` reads it).
        bids_ids: give subject IDs the ``sub-`` prefix (as :func:`normalise_bids_ids`).

    Returns:
        ``{subject: {column: text}}`` for subjects with any such cell.
    """
    from hcp_cam.data.participants import _SUBJECT_ALIASES, _read_table

    table, _ = _read_table(Path(path))
    columns = {str(c).strip().lower(): c for c in table.columns}
    subject_col = next((columns[a] for a in _SUBJECT_ALIASES if a in columns), None)
    extra = [c for key, c in columns.items() if key not in _KNOWN_COLUMNS]
    if subject_col is None or not extra:
        return {}
    out = {}
    for _, row in table.iterrows():
        subject = str(row[subject_col]).strip()
        if bids_ids and not subject.startswith("sub-"):
            subject = f"sub-{subject}"
        values = {
            str(c).strip(): str(row[c]).strip() for c in extra if str(row[c]).strip() not in ("", "n/a")
        }
        if values:
            out[subject] = values
    return out


def read_dataset_participants(
    path: str | os.PathLike,
    layout: str,
    acquisitions: list[Acquisition],
    groups: Any = None,
    strict: bool = False,
) -> tuple[pd.DataFrame, bool]:
    """Read the participants table the way the dataset's layout names its subjects.

    For BIDS and QSIPrep the table needs ``participant_id`` and ``age`` (or ``group``); wherever
    the subjects with data are all ``sub-<label>`` (BIDS, QSIPrep, QSIRecon), IDs without the
    prefix are given it, with one warning.

    Returns:
        the table of :func:`hcp_cam.data.read_participants` and whether IDs are BIDS ``sub-`` IDs.

    Raises:
        InputError: a BIDS table without ``participant_id``, or without ``age`` and ``group``;
            everything :func:`hcp_cam.data.read_participants` refuses.
    """
    from hcp_cam.data.participants import _SUBJECT_ALIASES, _read_table, read_participants

    path = Path(path)
    bids_ids = layout in ("bids", "qsiprep") or (
        bool(acquisitions) and all(a.subject.startswith("sub-") for a in acquisitions)
    )
    if layout in ("bids", "qsiprep"):
        table, _ = _read_table(path)
        columns = {str(c).strip().lower() for c in table.columns}
        if not columns & set(_SUBJECT_ALIASES) or not columns & {"age", "group"}:
            raise InputError(
                "a BIDS participants table needs a 'participant_id' column (sub-<label>) and an 'age' "
                f"column (or 'group'); found columns {[str(c) for c in table.columns]}",
                path,
            )
    table = read_participants(path, groups=groups, strict=strict)
    if bids_ids:
        table = normalise_bids_ids(table, path)
    return table, bids_ids
