"""The participants table and the age groups that turn ages into class labels.

A participants table is a CSV or TSV file with one row per subject: a ``subject`` column and an
``age`` column (a number, a range such as ``25-35``, or an open range such as ``36+``) and/or a
``group`` column naming the group outright. A row fits a group when its whole age range lies
inside that group's inclusive bounds; an explicit ``group`` overrides the age.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pandas as pd

from hcp_cam.data.discovery import Acquisition
from hcp_cam.errors import ConfigError, InputError

__all__ = [
    "AgeGroups",
    "DEFAULT_GROUPS",
    "parse_groups",
    "parse_age",
    "read_participants",
    "match_participants",
    "PARTICIPANT_COLUMNS",
]

logger = logging.getLogger(__name__)

PARTICIPANT_COLUMNS = ("subject", "age", "age_range", "group", "label")
# accepted spellings of the columns (compared lower-case); BIDS calls the subject participant_id
_SUBJECT_ALIASES = ("subject", "subject_id", "participant_id")
_AGE_ALIASES = ("age",)
_GROUP_ALIASES = ("group",)
_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_CLOSED_RANGE = re.compile(rf"^({_NUMBER})\s*[-\u2013]\s*({_NUMBER})$")
_OPEN_RANGE = re.compile(rf"^({_NUMBER})\s*\+$")
_SINGLE = re.compile(rf"^({_NUMBER})$")


def parse_age(text: str) -> tuple[float, float] | None:
    """Read an age or an age range, in years.

    Args:
        text: ``"12"``, ``"12.5"``, ``"25-35"`` (inclusive), ``"36+"`` (36 and over) or empty.

    Returns:
        ``(low, high)`` in years (``high`` is ``inf`` for an open range; ``low == high`` for a
        single age), or ``None`` for an empty text.

    Raises:
        ValueError: the text is none of the forms above, or a range is reversed.
    """
    text = str(text).strip()
    if not text:
        return None
    if m := _SINGLE.match(text):
        return float(m[1]), float(m[1])
    if m := _CLOSED_RANGE.match(text):
        low, high = float(m[1]), float(m[2])
        if low > high:
            raise ValueError(f"reversed range {text!r}")
        return low, high
    if m := _OPEN_RANGE.match(text):
        return float(m[1]), math.inf
    raise ValueError(f"{text!r} is not an age in years, a range like 25-35 or an open range like 36+")


@dataclass(frozen=True)
class AgeGroups:
    """Ordered, non-overlapping age groups; a group's position is its class label.

    Args:
        names: group names in label order, e.g. ``("young", "old")``.
        bounds: one inclusive ``(low, high)`` in years per group (``high`` may be ``inf``).

    Raises:
        ConfigError: fewer than two groups, repeated names, a reversed or negative range, or
            overlapping groups.
    """

    names: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "bounds", tuple((float(lo), float(hi)) for lo, hi in self.bounds))
        if len(self.names) != len(self.bounds):
            raise ConfigError(f"age groups: {len(self.names)} names but {len(self.bounds)} bounds")
        if len(self.names) < 2:
            raise ConfigError(f"age groups: need at least two groups, got {self.to_spec() or 'none'}")
        if len(set(self.names)) != len(self.names) or not all(n.strip() for n in self.names):
            raise ConfigError(f"age groups: names must be non-empty and distinct, got {list(self.names)}")
        for name, (lo, hi) in zip(self.names, self.bounds, strict=True):
            if not 0 <= lo <= hi:
                raise ConfigError(f"age groups: group {name!r} has an invalid range {lo:g}-{hi:g}")
        ordered = sorted(zip(self.bounds, self.names, strict=True))
        for (b0, n0), (b1, n1) in pairwise(ordered):
            if b1[0] <= b0[1]:
                raise ConfigError(f"age groups: {n0!r} ({_fmt(b0)}) and {n1!r} ({_fmt(b1)}) overlap")

    @classmethod
    def from_spec(cls, spec: str) -> AgeGroups:
        """Parse ``"young:8-15,old:25-75"`` (inclusive bounds in years; ``old:65+`` is open)."""
        names, bounds = [], []
        for part in (p.strip() for p in str(spec).split(",")):
            name, sep, rng = part.partition(":")
            try:
                parsed = parse_age(rng) if sep else None
            except ValueError as e:
                raise ConfigError(f"age groups {spec!r}: group {name.strip()!r}: {e}") from e
            if parsed is None:
                raise ConfigError(f"age groups {spec!r}: expected name:low-high, got {part!r}")
            names.append(name.strip())
            bounds.append(parsed)
        return cls(tuple(names), tuple(bounds))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Sequence[float]]) -> AgeGroups:
        """Build from ``{name: (low, high)}``; the mapping's order is the label order."""
        return cls(tuple(mapping), tuple(tuple(v) for v in mapping.values()))

    def to_spec(self) -> str:
        """The ``name:low-high,...`` string that :meth:`from_spec` reads back."""
        return ",".join(f"{n}:{_fmt(b)}" for n, b in zip(self.names, self.bounds, strict=True))

    def as_dict(self) -> dict[str, list[float | None]]:
        """``{name: [low, high]}`` for JSON (an open upper bound is ``None``)."""
        return {
            n: [lo, None if math.isinf(hi) else hi]
            for n, (lo, hi) in zip(self.names, self.bounds, strict=True)
        }

    def group_of(self, low: float, high: float | None = None) -> str | None:
        """The group whose bounds hold the whole range ``[low, high]``, or ``None``."""
        high = low if high is None else high
        for name, (lo, hi) in zip(self.names, self.bounds, strict=True):
            if lo <= low and high <= hi:
                return name
        return None

    def label_of(self, name: str) -> int:
        """The class label (position) of group ``name``."""
        return self.names.index(name)

    def __len__(self) -> int:
        return len(self.names)


def _fmt(bounds: tuple[float, float]) -> str:
    lo, hi = bounds
    return f"{lo:g}+" if math.isinf(hi) else f"{lo:g}-{hi:g}"


# the seed study's groups: children and adolescents against adults
DEFAULT_GROUPS = AgeGroups(("young", "old"), ((8.0, 15.0), (25.0, 75.0)))


def parse_groups(groups: str | Mapping[str, Sequence[float]] | AgeGroups | None) -> AgeGroups:
    """Accept groups as an :class:`AgeGroups`, a spec string, a mapping, or ``None`` (the default).

    Raises:
        ConfigError: the spec cannot be read or the groups are invalid.
    """
    if groups is None:
        return DEFAULT_GROUPS
    if isinstance(groups, AgeGroups):
        return groups
    if isinstance(groups, str):
        return AgeGroups.from_spec(groups)
    if isinstance(groups, Mapping):
        return AgeGroups.from_mapping(groups)
    raise ConfigError(f"age groups: expected a spec string or a mapping, got {type(groups).__name__}")


def read_participants(
    path: str | os.PathLike,
    groups: str | Mapping[str, Sequence[float]] | AgeGroups | None = DEFAULT_GROUPS,
    strict: bool = False,
) -> pd.DataFrame:
    """Read a participants table and give each subject its age group and class label.

    The separator follows the extension (``.csv`` comma, ``.tsv``/``.tab`` tab); otherwise it is
    a tab if the header line holds one, else a comma. Every cell is read as text, so subject IDs
    keep their leading zeros. Column names are matched case-insensitively (``participant_id`` and
    ``subject_id`` are accepted for ``subject``). Every row needs the header's number of fields;
    trailing empty fields (``100307,25,``, as spreadsheets export) are ignored.

    Args:
        path: the CSV/TSV file.
        groups: the age groups (see :func:`parse_groups`); their order gives the labels.
        strict: raise instead of warning when a row fits no group or has neither age nor group.

    Returns:
        one row per kept subject, in file order, with columns ``subject`` (str), ``age`` (float,
        years: the age or the midpoint of a closed range; NaN for an open range or no age),
        ``age_range`` (the age text as written), ``group`` (str) and ``label`` (int, the group's
        position in ``groups``).

    Raises:
        InputError: the file is missing or unreadable; a row with another number of fields than
            the header (the message gives its line); the ``subject`` column or both ``age`` and
            ``group`` are missing (the message lists the columns found); an empty or duplicated
            subject; an age that cannot be read; a ``group`` value that is not a group name; with
            ``strict``, a row that fits no group; no row fits any group.
        ConfigError: ``groups`` is invalid.
    """
    path = Path(path)
    groups = parse_groups(groups)
    table, lines = _read_table(path)
    columns = {str(c).strip().lower(): c for c in table.columns}
    subject_col = next((columns[a] for a in _SUBJECT_ALIASES if a in columns), None)
    age_col = next((columns[a] for a in _AGE_ALIASES if a in columns), None)
    group_col = next((columns[a] for a in _GROUP_ALIASES if a in columns), None)
    if subject_col is None or (age_col is None and group_col is None):
        raise InputError(
            f"a participants table needs a 'subject' column and an 'age' and/or 'group' column; "
            f"found columns {[str(c) for c in table.columns]}",
            path,
        )

    subjects = table[subject_col].str.strip()
    if (subjects == "").any():
        rows = [lines[i] for i in range(len(subjects)) if subjects.iloc[i] == ""]
        raise InputError(f"empty subject on line(s) {rows}", path)
    duplicated = sorted(set(subjects[subjects.duplicated()]))
    if duplicated:
        raise InputError(f"subjects listed more than once: {duplicated}", path)

    records, unassigned = [], []
    for i, subject in subjects.items():
        age_text = str(table.at[i, age_col]).strip() if age_col is not None else ""
        group = str(table.at[i, group_col]).strip() if group_col is not None else ""
        try:
            age_range = parse_age(age_text)
        except ValueError as e:
            raise InputError(f"line {lines[i]}, subject {subject}: age {e}", path) from e
        if group and group not in groups.names:
            raise InputError(
                f"line {lines[i]}, subject {subject}: group {group!r} is not one of {list(groups.names)}",
                path,
            )
        if not group and age_range is not None:
            group = groups.group_of(*age_range) or ""
        if not group:
            unassigned.append(f"{subject} (age {age_text or 'missing'})")
            continue
        age = math.nan if age_range is None or math.isinf(age_range[1]) else sum(age_range) / 2
        records.append((subject, age, age_text, group, groups.label_of(group)))

    if unassigned:
        message = (
            f"{len(unassigned)} subject(s) fit no age group of {groups.to_spec()} "
            f"(a range must lie inside one group): {_preview(unassigned)}"
        )
        if strict:
            raise InputError(message, path)
        logger.warning("%s: %s; left out", path, message)
    if not records:
        raise InputError(f"no subject fits any age group of {groups.to_spec()}", path)
    out = pd.DataFrame.from_records(records, columns=list(PARTICIPANT_COLUMNS))
    return out.astype({"subject": str, "age": float, "age_range": str, "group": str, "label": int})


def _read_table(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """The table as text cells, and the line of the file each row starts on (1-based).

    Read with the :mod:`csv` module rather than ``pandas.read_csv``: pandas takes the first column
    as the row index when the data rows have one field more than the header (trailing commas, or
    one ragged first row), which shifts every value one column to the left and made the messages
    quote subject IDs as line numbers. Here a row must have the header's number of fields; empty
    fields after the last column (trailing separators, as spreadsheets write them) are ignored,
    and rows with no value at all are skipped, as blank lines are.
    """
    if not path.is_file():
        raise InputError("participants table not found", path)
    suffix = path.suffix.lower()
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read as a UTF-8 CSV/TSV table ({e})", path) from e
    if suffix == ".csv":
        sep = ","
    elif suffix in (".tsv", ".tab"):
        sep = "\t"
    else:
        sep = "\t" if "\t" in text.split("\n", 1)[0] else ","
    reader = csv.reader(io.StringIO(text), delimiter=sep, strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    line = 1  # the line the next row starts on
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(start)
    except csv.Error as e:
        raise InputError(f"line {reader.line_num}: cannot read as a CSV/TSV table ({e})", path) from e
    if not rows:
        raise InputError("the participants table is empty (no header line)", path)
    header, header_line = _trim(rows[0]), lines[0]
    names = [c.strip() for c in header]
    if "" in names:
        raise InputError(
            f"line {header_line}: column {names.index('') + 1} of the header has no name "
            f"(found {names}); name it or remove the column",
            path,
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(
            f"line {header_line}: the header names the column(s) {repeated} more than once", path
        )
    width = len(header)
    sep_name = "tab" if sep == "\t" else "comma"
    for row, at in zip(rows[1:], lines[1:], strict=True):
        cells = _trim(row) if len(row) > width else row
        if len(cells) > width:
            raise InputError(
                f"line {at} has {len(cells)} {sep_name}-separated fields but the header (line {header_line}) "
                f"has {width} ({', '.join(names)}): extra value {cells[width]!r}; remove it or name "
                "its column in the header",
                path,
            )
        if len(cells) < width:
            raise InputError(
                f"line {at} has {len(cells)} {sep_name}-separated field(s) but the header (line {header_line}) "
                f"has {width} ({', '.join(names)}): add the missing separators (an empty cell is fine)",
                path,
            )
    body = [(_trim(r) if len(r) > width else r) for r in rows[1:]]
    return pd.DataFrame(body, columns=names, dtype=str), lines[1:]


def _trim(row: list[str]) -> list[str]:
    """``row`` without its trailing empty fields."""
    end = len(row)
    while end > 0 and not row[end - 1].strip():
        end -= 1
    return row[:end]


def match_participants(
    acquisitions: Iterable[Acquisition], participants: pd.DataFrame
) -> tuple[list[Acquisition], pd.DataFrame]:
    """Keep the subjects that have both data and a participants row; warn about the others.

    Args:
        acquisitions: from :func:`hcp_cam.data.discover_acquisitions`.
        participants: from :func:`read_participants`.

    Returns:
        the acquisitions of matched subjects (in their order) and the participants rows of the
        subjects with data (in table order, index reset).

    Raises:
        InputError: no subject has both data and a participants row.
    """
    acquisitions = list(acquisitions)
    with_data = {a.subject for a in acquisitions}
    in_table = set(participants["subject"])
    no_data = sorted(in_table - with_data)
    no_row = sorted(with_data - in_table)
    if no_data:
        logger.warning(
            "%d subject(s) in the participants table have no data: %s", len(no_data), _preview(no_data)
        )
    if no_row:
        logger.warning(
            "%d subject(s) with data have no usable participants row (missing, or left out above): %s",
            len(no_row),
            _preview(no_row),
        )
    matched = with_data & in_table
    if not matched:
        raise InputError(
            f"no subject has both data and a participants row (data: {_preview(sorted(with_data), 5)}; "
            f"table: {_preview(sorted(in_table), 5)})"
        )
    rows = participants[participants["subject"].isin(matched)].reset_index(drop=True)
    return [a for a in acquisitions if a.subject in matched], rows


def _preview(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"
