"""Subject-level, group-stratified, seeded splits: a hold-out split and k folds.

Subjects, never slices or acquisitions, are assigned to splits: slices of one brain on both
sides of a split let a network recognise the brain instead of its age (see docs/data.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pandas as pd

from hcp_cam.errors import InputError

__all__ = ["SPLITS", "split_subjects", "kfold_subjects"]

SPLITS = ("training", "validation", "test")


def split_subjects(
    subjects_df: pd.DataFrame,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Split subjects into training, validation and test, stratified by group.

    Within each group the subjects are sorted, shuffled with ``numpy.random.default_rng(seed)``
    and cut: ``n * test_fraction`` test and ``n * val_fraction`` validation subjects, rounded half up
    (at least one each when the fraction is above 0), the rest training. A fraction of 0 leaves
    that split empty on purpose.

    Args:
        subjects_df: one row per subject (repeated rows of one subject, e.g. one per acquisition,
            are allowed if they agree on the group) with columns ``subject`` and ``group``.
        val_fraction: share of each group for validation, in [0, 1).
        test_fraction: share of each group for test, in [0, 1); the two add up to less than 1.
        seed: the shuffle's seed; the same seed and subjects give the same split.
        groups: every group that must appear (in label order), so that a group without any
            subject is an error too; by default the groups found in ``subjects_df``.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, subject IDs sorted.

    Raises:
        InputError: bad fractions; a subject in two groups; a group too small to appear in every
            requested split (the message gives the subjects per group and the empty split).
    """
    _check_fractions(val_fraction, test_fraction)
    by_group = _subjects_by_group(subjects_df, groups)
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for group, subjects in by_group.items():
        shuffled = _shuffled(subjects, rng)
        n = len(shuffled)
        n_test = _count(n, test_fraction)
        n_val = _count(n, val_fraction)
        if n - n_test - n_val < 1:
            raise InputError(
                f"cannot split {_counts(by_group)} with validation {val_fraction:g} and test {test_fraction:g}: "
                f"group {group!r} has {n} subject(s), so training would have no {group!r} subject "
                f"(needs {n_test} test + {n_val} validation + at least 1 training)"
            )
        out["test"] += shuffled[:n_test]
        out["validation"] += shuffled[n_test : n_test + n_val]
        out["training"] += shuffled[n_test + n_val :]
    return {name: sorted(subjects) for name, subjects in out.items()}


def kfold_subjects(
    subjects_df: pd.DataFrame,
    num_folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.2,
    groups: Sequence[str] | None = None,
) -> list[dict[str, list[str]]]:
    """Stratified k-fold over subjects: each subject is in exactly one fold's test split.

    Within each group the shuffled subjects are dealt to the folds in turn, continuing from
    where the previous group stopped so that the folds' sizes differ by at most one. For fold
    ``i`` the test split is fold ``i``; the validation split is carved from the remaining
    subjects as in :func:`split_subjects` (stratified, ``val_fraction`` of each group, seeded by
    ``seed`` and ``i``), the rest is training.

    Args:
        subjects_df: columns ``subject`` and ``group`` (see :func:`split_subjects`).
        num_folds: number of folds k, at least 2.
        seed: the shuffle's seed.
        val_fraction: share of each group's non-test subjects for validation, in [0, 1).
        groups: every group that must appear (see :func:`split_subjects`).

    Returns:
        ``num_folds`` dicts ``{"training", "validation", "test"}`` of sorted subject IDs; the
        list's position is the fold index.

    Raises:
        InputError: ``num_folds`` < 2; a group with fewer than ``num_folds`` subjects (some test
            fold would lack it) or too few to fill validation and training (the message gives the
            subjects per group).
    """
    if int(num_folds) != num_folds or num_folds < 2:
        raise InputError(f"num_folds must be an integer >= 2, got {num_folds}")
    num_folds = int(num_folds)
    _check_fractions(val_fraction, 0.0)
    by_group = _subjects_by_group(subjects_df, groups)
    small = {g: len(s) for g, s in by_group.items() if len(s) < num_folds}
    if small:
        group, n = next(iter(small.items()))
        raise InputError(
            f"cannot make {num_folds} folds of {_counts(by_group)}: group {group!r} has {n} subject(s), "
            f"so the test split of {num_folds - n} fold(s) would have no {group!r} subject"
        )
    rng = np.random.default_rng(seed)
    test_folds: list[list[str]] = [[] for _ in range(num_folds)]
    offset = 0
    for subjects in by_group.values():
        for i, subject in enumerate(_shuffled(subjects, rng)):
            test_folds[(offset + i) % num_folds].append(subject)
        offset = (offset + len(subjects)) % num_folds

    folds = []
    for k, test in enumerate(test_folds):
        rest = subjects_df[~subjects_df["subject"].astype(str).isin(test)]
        try:
            inner = split_subjects(
                rest, val_fraction=val_fraction, test_fraction=0.0, seed=seed * 1000 + k, groups=groups
            )
        except InputError as e:
            raise InputError(f"fold {k}: {e} (subjects per group overall: {_counts(by_group)})") from e
        folds.append({"training": inner["training"], "validation": inner["validation"], "test": sorted(test)})
    return folds


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise InputError(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise InputError(
            f"val_fraction + test_fraction must be below 1 (leave subjects to train on), got {val_fraction} + {test_fraction}"
        )


def _subjects_by_group(subjects_df: pd.DataFrame, groups: Sequence[str] | None) -> dict[str, list[str]]:
    """Sorted unique subjects per group: ``groups`` in order, else label order, else first seen."""
    missing = {"subject", "group"} - set(subjects_df.columns)
    if missing:
        raise InputError(
            f"the subjects table needs columns {sorted(missing)}; found {list(subjects_df.columns)}"
        )
    df = subjects_df.assign(subject=subjects_df["subject"].astype(str))
    groups_per_subject = df.groupby("subject")["group"].nunique()
    conflicting = sorted(groups_per_subject.index[groups_per_subject > 1])
    if conflicting:
        raise InputError(f"subjects assigned to more than one group: {conflicting}")
    if "label" in df.columns:
        df = df.sort_values("label", kind="stable")
    if df.empty:
        raise InputError("no subjects to split")
    if groups is None:
        groups = list(pd.unique(df["group"]))
    else:
        unknown = sorted(set(df["group"]) - set(groups))
        if unknown:
            raise InputError(f"groups {unknown} are not among the expected groups {list(groups)}")
    return {g: sorted(set(df.loc[df["group"] == g, "subject"])) for g in groups}


def _shuffled(subjects: list[str], rng: np.random.Generator) -> list[str]:
    return [subjects[i] for i in rng.permutation(len(subjects))]


def _count(n: int, fraction: float) -> int:
    """``n * fraction`` rounded half up, and at least one subject for a non-zero fraction.

    The product is taken of the fraction as written in decimal (``Fraction(str(0.35))`` is 7/20),
    so 90 subjects at 0.35 are 31.5 -> 32, where the float product 31.499999999999996 gave 31.
    """
    if fraction <= 0:
        return 0
    return max(1, math.floor(n * Fraction(str(fraction)) + Fraction(1, 2)))


def _counts(by_group: dict[str, list[str]]) -> str:
    return ", ".join(f"{g}={len(s)}" for g, s in by_group.items()) + " subjects"
