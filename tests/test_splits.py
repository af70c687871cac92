"""Subject-level, stratified, seeded splits and k-fold, also through the datalist of a multi-run layout."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hcp_cam.data import SPLITS, kfold_subjects, make_datalist, split_subjects
from hcp_cam.errors import InputError


def subjects(counts: dict[str, int]) -> pd.DataFrame:
    rows = [(f"{g}{i:03d}", g, k) for k, (g, n) in enumerate(counts.items()) for i in range(n)]
    return pd.DataFrame(rows, columns=["subject", "group", "label"])


def group_of(df: pd.DataFrame) -> dict[str, str]:
    return dict(zip(df["subject"], df["group"], strict=True))


def test_split_is_a_partition_and_stratified():
    df = subjects({"young": 13, "old": 11})
    split = split_subjects(df, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert set(split) == set(SPLITS)
    all_ids = [s for name in SPLITS for s in split[name]]
    assert sorted(all_ids) == sorted(df["subject"])  # each subject exactly once
    groups = group_of(df)
    for name in SPLITS:
        assert {groups[s] for s in split[name]} == {"young", "old"}, name
    assert [sum(groups[s] == "old" for s in split[n]) for n in SPLITS] == [7, 2, 2]  # 11 * 0.2 = 2.2 -> 2


def test_counts_per_group_round_half_up():
    split = split_subjects(subjects({"young": 13, "old": 10}), 0.2, 0.2, seed=0)
    groups = group_of(subjects({"young": 13, "old": 10}))
    per = {n: {g: sum(groups[s] == g for s in split[n]) for g in ("young", "old")} for n in SPLITS}
    # 13 * 0.2 = 2.6 -> 3; 10 * 0.2 = 2
    assert per == {
        "training": {"young": 7, "old": 6},
        "validation": {"young": 3, "old": 2},
        "test": {"young": 3, "old": 2},
    }


def test_seeded_determinism_and_seed_dependence():
    df = subjects({"young": 15, "old": 15})
    a = split_subjects(df, seed=7)
    assert a == split_subjects(df.sample(frac=1.0, random_state=1), seed=7)  # row order does not matter
    others = [split_subjects(df, seed=s) for s in range(1, 6)]
    assert any(o["test"] != a["test"] for o in others)


def test_repeated_rows_per_subject_are_one_subject():
    df = subjects({"young": 6, "old": 6})
    per_acquisition = pd.concat([df, df, df], ignore_index=True)
    assert split_subjects(per_acquisition, seed=2) == split_subjects(df, seed=2)


def test_empty_group_error_gives_counts_and_split():
    df = subjects({"young": 10, "old": 2})
    with pytest.raises(InputError, match=r"young=10, old=2 subjects") as err:
        split_subjects(df, 0.2, 0.2)
    assert "group 'old' has 2 subject(s), so training would have no 'old' subject" in str(err.value)


def test_group_without_subjects_is_an_error_when_expected():
    df = subjects({"young": 10})
    with pytest.raises(InputError, match="young=10, old=0"):
        split_subjects(df, groups=("young", "old"))


@pytest.mark.parametrize("val, test", [(-0.1, 0.2), (0.5, 0.5), (0.2, 1.0)])
def test_bad_fractions(val, test):
    with pytest.raises(InputError, match="fraction"):
        split_subjects(subjects({"a": 10, "b": 10}), val, test)


def test_kfold_every_subject_in_exactly_one_test_fold():
    df = subjects({"young": 12, "old": 14})
    folds = kfold_subjects(df, num_folds=5, seed=1)
    assert len(folds) == 5
    tests = [s for f in folds for s in f["test"]]
    assert sorted(tests) == sorted(df["subject"])
    sizes = sorted(len(f["test"]) for f in folds)
    assert sizes[-1] - sizes[0] <= 1
    groups = group_of(df)
    for k, fold in enumerate(folds):
        assert sorted(fold["training"] + fold["validation"] + fold["test"]) == sorted(df["subject"]), k
        assert not set(fold["test"]) & (set(fold["training"]) | set(fold["validation"]))
        assert not set(fold["training"]) & set(fold["validation"])
        for name in SPLITS:
            assert {groups[s] for s in fold[name]} == {"young", "old"}, (k, name)
    assert folds == kfold_subjects(df, num_folds=5, seed=1)
    assert folds != kfold_subjects(df, num_folds=5, seed=2)


def test_kfold_group_smaller_than_folds():
    with pytest.raises(InputError, match=r"young=12, old=3 subjects.*group 'old' has 3"):
        kfold_subjects(subjects({"young": 12, "old": 3}), num_folds=5)
    with pytest.raises(InputError, match="num_folds"):
        kfold_subjects(subjects({"young": 4, "old": 4}), num_folds=1)


# -- through the datalist: every acquisition of a subject lands in its subject's split ----------


def make_unprocessed_subject(root: Path, subject: str) -> None:
    """Two runs, each with a _gdc twin: four acquisitions sharing two bval/bvec pairs."""
    folder = root / subject / "unprocessed" / "3T" / "Diffusion"
    folder.mkdir(parents=True)
    image = nib.Nifti1Image(np.ones((4, 4, 4, 7), np.float32), np.diag([1.25, 1.25, 1.25, 1]))
    for run in ("dir95_RL", "dir95_LR"):
        stem = f"{subject}_3T_DWI_{run}"
        nib.save(image, str(folder / f"{stem}.nii.gz"))
        nib.save(image, str(folder / f"{stem}_gdc.nii.gz"))
        (folder / f"{stem}.bval").write_text("0 " + "1000 " * 6 + "\n")
        (folder / f"{stem}.bvec").write_text("0 1 0 0 1 0 0\n0 0 1 0 0 1 0\n0 0 0 1 0 0 1\n")


@pytest.mark.parametrize("num_folds, fold", [(None, None), (3, 2)])
def test_multi_run_acquisitions_never_cross_splits(tmp_path, num_folds, fold):
    ages = {f"{i:04d}": (10 if i % 2 else 30) for i in range(10)}
    for s in ages:
        make_unprocessed_subject(tmp_path, s)
    (tmp_path / "participants.csv").write_text(
        "subject,age\n" + "".join(f"{s},{a}\n" for s, a in ages.items())
    )
    dl = make_datalist(tmp_path, val_fraction=0.2, test_fraction=0.2, seed=4, num_folds=num_folds, fold=fold)
    split_of: dict[str, set[str]] = {}
    for name in SPLITS:
        assert dl[name], name
        for e in dl[name]:
            split_of.setdefault(e["subject"], set()).add(name)
    assert set(split_of) == set(ages)
    assert all(len(v) == 1 for v in split_of.values()), split_of
    for name in SPLITS:
        per_subject = pd.Series([e["subject"] for e in dl[name]]).value_counts()
        assert (per_subject == 4).all()  # RL, LR and their _gdc twins
        assert {e["group"] for e in dl[name]} == {"young", "old"}


def test_split_sizes_at_exactly_one_half_round_up():
    """n * fraction = x.5 rounds up in every group, also where round() (half to even) would go down
    and where the float product falls just below .5 (0.35 * 90 = 31.499999999999996)."""
    df = subjects({"young": 10, "old": 18, "mid": 6})
    split = split_subjects(df, val_fraction=0.25, test_fraction=0.25, seed=0)
    groups = group_of(df)
    per = {n: {g: sum(groups[s] == g for s in split[n]) for g in ("young", "old", "mid")} for n in SPLITS}
    # 10 * 0.25 = 2.5 -> 3 (round: 2); 18 * 0.25 = 4.5 -> 5 (round: 4); 6 * 0.25 = 1.5 -> 2
    assert per["test"] == {"young": 3, "old": 5, "mid": 2}
    assert per["validation"] == {"young": 3, "old": 5, "mid": 2}
    assert per["training"] == {"young": 4, "old": 8, "mid": 2}
    big = split_subjects(subjects({"young": 90, "old": 90}), val_fraction=0.35, test_fraction=0.1, seed=0)
    assert len(big["validation"]) == 2 * 32 and len(big["test"]) == 2 * 9  # 31.5 -> 32; 9.0 -> 9
    # and the validation split carved inside each k-fold training set rounds the same way
    folds = kfold_subjects(subjects({"young": 15, "old": 15}), num_folds=3, val_fraction=0.25, seed=0)
    for fold in folds:
        assert len(fold["test"]) == 10 and len(fold["validation"]) == 2 * 3  # 10 * 0.25 = 2.5 -> 3
