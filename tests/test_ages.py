"""Ages as a regression target: the participants rules, the regression datalist, the graded synthetic effect."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_trees import bids_root, write_dwi, write_gradients

from hcp_cam.data.ages import age_strata, make_regression_datalist, read_ages
from hcp_cam.errors import ConfigError, InputError
from hcp_cam.synth import generate_dataset, make_subject
from hcp_cam.synth.graded import draw_graded_participants
from hcp_cam.training.tasks import check_task, target_scale

SMALL = {"shape": (12, 14, 12), "n_b0": 1, "n_per_shell": 3, "progress": False}


def _table(tmp_path, text: str):
    path = tmp_path / "participants.csv"
    path.write_text(text)
    return path


def test_numbers_ranges_and_open_ranges(tmp_path, caplog):
    path = _table(tmp_path, "subject,age,group\n001,12,young\n002,25-35,old\n003,36+,old\n004,,\n005,40.5,\n")
    with caplog.at_level(logging.WARNING):
        ages = read_ages(path)
    assert ages["subject"].tolist() == ["001", "002", "005"]  # ids keep their zeros
    assert ages["age"].tolist() == [12.0, 30.0, 40.5]  # a closed range at its midpoint
    text = caplog.text
    assert "used at its midpoint" in text and "002 (25-35)" in text and "spans 10 years" in text
    assert "003 (age 36+)" in text and "004 (age missing)" in text and "left out" in text
    with pytest.raises(InputError, match="no age in years"):
        read_ages(path, strict=True)


@pytest.mark.parametrize(
    "text, match",
    [
        ("subject,age\n001,12\n002,old\n", "line 3, subject 002: age 'old' is not an age"),
        ("subject,group\n001,young\n", "'subject' and 'age' columns"),
        ("subject,age\n001,12\n001,13\n", "more than once"),
        ("subject,age\n001,\n", "no subject has an age"),
    ],
)
def test_bad_tables_name_the_file_and_the_row(tmp_path, text, match):
    path = _table(tmp_path, text)
    with pytest.raises(InputError, match=match) as e:
        read_ages(path)
    assert str(path) in str(e.value)


def test_strata_are_equal_sized_age_bins():
    subjects = [f"s{i}" for i in range(13)]
    ages = [float(a) for a in (70, 10, 20, 30, 40, 50, 60, 15, 25, 35, 45, 55, 65)]
    names = age_strata(subjects, ages)  # 13 // 6 = 2 bins
    assert sorted(set(names)) == ["age_10-40", "age_45-70"]
    assert names.count("age_10-40") == 7 and names[0] == "age_45-70"
    assert set(age_strata(subjects[:5], ages[:5])) == {"age_10-70"}


def test_the_graded_dataset_keeps_every_age_and_splits_it_by_subject(tmp_path, caplog):
    ds = generate_dataset(tmp_path / "d", n_subjects=12, seed=2, age_effect="graded", **SMALL)
    table = pd.read_csv(ds.root / "participants.csv", dtype={"subject": str})
    assert list(table.columns) == ["subject", "age"]  # no groups: a classifier derives them from the ages
    datalist = make_regression_datalist(ds.root, seed=0, num_folds=3, fold=1)
    assert datalist["task"] == "regression" and datalist["labels"] == ["age"]
    subjects = {s: [e["subject"] for e in datalist[s]] for s in ("training", "validation", "test")}
    assert sorted(sum(subjects.values(), [])) == sorted(table["subject"])  # every subject, mid ages too
    assert not set(subjects["test"]) & set(subjects["training"])
    for e in datalist["training"]:
        assert e["label"] == e["age"] == float(table.set_index("subject").at[e["subject"], "age"])
    assert datalist["age_range"] == [float(table["age"].min()), float(table["age"].max())]
    assert len(datalist["groups"]) == 2  # 12 // 6 age strata, each in every split
    for split in ("training", "test"):
        assert {e["group"] for e in datalist[split]} == set(datalist["groups"])
    scale = target_scale([e["age"] for e in datalist["training"]])
    assert scale.to_years(scale.to_target(33.0)) == pytest.approx(33.0)
    assert target_scale([10, 20], standardise=False).as_dict() == {
        "center": 0.0,
        "scale": 1.0,
        "train_mean": 15.0,
    }
    # few distinct ages: a warning
    table.assign(age=[20, 30] * 6).to_csv(ds.root / "participants.csv", index=False)
    with caplog.at_level(logging.WARNING):
        make_regression_datalist(ds.root, seed=0)
    assert "only 2 distinct ages" in caplog.text


def test_graded_effect_grows_with_age_and_leaves_the_default_alone():
    p = draw_graded_participants(20, seed=4, age_range=(8, 75))
    assert p["age"].between(8, 75).all() and p["age"].max() - p["age"].min() > 50
    # stratified draws: every fifth of the range holds its share (4 of 20), give or take the rounding
    assert (np.histogram(p["age"], bins=5, range=(8, 75))[0] >= 3).all()
    fa = []
    for f in (0.0, 0.5, 1.0):
        s = make_subject(group="young", shape=(24, 28, 24), seed=7, snr=None, age_fraction=f, jitter=1.0)
        fa.append(float(s.fa[s.roi > 0].mean()))
        outside = s.fa[(s.roi == 0) & (s.mask > 0)]
    assert fa[0] > fa[1] > fa[2]  # FA in the region falls with age
    base = make_subject(group="young", shape=(24, 28, 24), seed=7, snr=None)
    np.testing.assert_array_equal(base.fa[(base.roi == 0) & (base.mask > 0)], outside)  # only the region
    assert float(base.fa[base.roi > 0].mean()) == pytest.approx(fa[0])  # fraction 0: no effect
    with pytest.raises(ConfigError, match="age_fraction"):
        make_subject(shape=(12, 14, 12), age_fraction=1.5)
    with pytest.raises(ConfigError, match="age_effect"):
        generate_dataset("unused", age_effect="linear")
    with pytest.raises(ConfigError, match="task must be one of classification, regression; got 'segment'"):
        check_task("segment")


def test_graded_ground_truth_and_manifest(tmp_path):
    ds = generate_dataset(
        tmp_path / "g", n_subjects=4, seed=1, age_effect="graded", age_range=(10, 70), **SMALL
    )
    manifest = pd.read_json(ds.manifest, typ="series")
    assert manifest["parameters"]["age_effect"] == "graded" and manifest["parameters"]["age_range"] == [
        10,
        70,
    ]
    effects = {s["subject"]: s["rd_increase_in_roi"] for s in manifest["subjects"]}
    ages = ds.participants.set_index("subject")["age"]
    order = ages.sort_values().index
    assert np.all(np.diff([effects[s] for s in order]) >= -0.15)  # grows with age (amplitude jitter 0.2)
    assert effects[order[-1]] > effects[order[0]]
    roi = nib.load(ds.roi[order[0]]).get_fdata()
    assert roi.sum() > 0


def test_the_demo_can_be_graded(tmp_path):
    from hcp_cam.training.data import resolve_dataset_dir

    root = resolve_dataset_dir("demo", tmp_path, demo_subjects=2, demo_age_effect="graded")
    assert root.name == "demo3_graded_n2_seed0"  # beside the group demo (demo3_n2_seed0), not over it
    assert list(pd.read_csv(root / "participants.csv").columns) == ["subject", "age"]
    with pytest.raises(ConfigError, match="demo_age_effect must be one of groups, graded"):
        resolve_dataset_dir("demo", tmp_path, demo_subjects=2, demo_age_effect="linear")


def test_regression_datalist_of_a_bids_dataset(tmp_path):
    """Raw BIDS as for a classifier: pybids' acquisitions (two sessions each), IDs given their ``sub-``
    prefix, the table's other columns kept; the label is the age in years, a range at its midpoint."""
    ages = {"01": "9", "sub-02": "12", "sub-03": "20", "sub-04": "25-35", "sub-05": "44", "sub-06": "61"}
    root = bids_root(
        tmp_path / "bids",
        participants=[["participant_id", "age", "sex"], *[[s, a, "F"] for s, a in ages.items()]],
    )
    write_gradients(root / "dwi")
    subjects = [s if s.startswith("sub-") else f"sub-{s}" for s in ages]
    for s in subjects:
        for ses in ("1", "2"):
            write_dwi(root / s / f"ses-{ses}" / "dwi" / f"{s}_ses-{ses}_dwi.nii.gz")
    datalist = make_regression_datalist(root, seed=0, index_dir=tmp_path / "index")
    assert datalist["layout"] == "bids" and datalist["task"] == "regression"
    entries = [e for split in ("training", "validation", "test") for e in datalist[split]]
    assert sorted({e["subject"] for e in entries}) == subjects  # "01" read as sub-01
    assert len(entries) == 12
    years = {"sub-01": 9.0, "sub-02": 12.0, "sub-03": 20.0, "sub-04": 30.0, "sub-05": 44.0, "sub-06": 61.0}
    for e in entries:
        assert e["label"] == e["age"] == years[e["subject"]]
        assert e["compute_mask"] and dict(e["entities"])["session"] in ("1", "2")
        assert e["participant"] == {"sex": "F"} and e["dwi"].startswith(e["subject"] + "/")
    for split in ("training", "validation", "test"):  # both sessions of a subject in one split
        assert all(sum(x["subject"] == e["subject"] for x in datalist[split]) == 2 for e in datalist[split])
