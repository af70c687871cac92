"""Participants tables (CSV/TSV, numbers, ranges, explicit groups), age groups, and matching to data."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hcp_cam.data import (
    DEFAULT_GROUPS,
    AgeGroups,
    discover_acquisitions,
    match_participants,
    parse_age,
    parse_groups,
    read_participants,
)
from hcp_cam.errors import ConfigError, InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def make_subject(root: Path, subject: str) -> None:
    """Preprocessed layout with a real 4x4x4x7 NIfTI and gradient files."""
    folder = root / subject / "T1w" / "Diffusion"
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 7), np.float32), np.eye(4)), str(folder / "data.nii.gz"))
    (folder / "bvals").write_text("0 " + "1000 " * 6 + "\n")
    (folder / "bvecs").write_text("0 1 0 0 1 0 0\n0 0 1 0 0 1 0\n0 0 0 1 0 0 1\n")


def test_numbers_keep_leading_zeros_and_labels_follow_group_order(tmp_path):
    path = write(tmp_path / "p.csv", "subject,age,sex\n0012,9,F\n100307,30,M\n000777,14.5,M\n")
    df = read_participants(path)
    assert list(df.columns) == ["subject", "age", "age_range", "group", "label"]
    assert list(df["subject"]) == ["0012", "100307", "000777"]
    assert list(df["group"]) == ["young", "old", "young"]
    assert list(df["label"]) == [0, 1, 0]
    assert df["age"].tolist() == [9.0, 30.0, 14.5]
    assert df["label"].dtype.kind == "i"


def test_ranges_use_midpoint_and_must_fit_one_group(tmp_path, caplog):
    path = write(tmp_path / "p.csv", "Subject,Age\n1,26-30\n2,22-25\n3,8-12\n4,36+\n")
    with caplog.at_level(logging.WARNING):
        df = read_participants(path)
    assert list(df["subject"]) == ["1", "3"]
    assert df["age"].tolist() == [28.0, 10.0]
    assert list(df["age_range"]) == ["26-30", "8-12"]
    # 22-25 straddles the gap below old (25-75); 36+ may exceed 75: both left out, named
    assert "2 (age 22-25)" in caplog.text and "4 (age 36+)" in caplog.text


def test_open_range_fits_an_open_group(tmp_path):
    path = write(tmp_path / "p.csv", "subject,age\na,36+\nb,12\n")
    df = read_participants(path, groups="young:8-15,old:25+")
    assert list(df["group"]) == ["old", "young"]
    assert math.isnan(df["age"].iloc[0])


def test_explicit_group_overrides_age_and_fills_missing_age(tmp_path):
    path = write(tmp_path / "p.csv", "subject,age,group\n1,30,young\n2,,old\n3,10,\n")
    df = read_participants(path)
    assert list(df["group"]) == ["young", "old", "young"]
    assert list(df["label"]) == [0, 1, 0]
    assert math.isnan(df["age"].iloc[1])


def test_group_only_table(tmp_path):
    df = read_participants(write(tmp_path / "p.csv", "subject,group\n1,old\n2,young\n"))
    assert list(df["label"]) == [1, 0]


def test_tsv_by_extension_and_sniffed(tmp_path):
    text = "participant_id\tage\n007\t10\n008\t50\n"
    for name in ("p.tsv", "p.txt"):
        df = read_participants(write(tmp_path / name, text))
        assert list(df["subject"]) == ["007", "008"]
        assert list(df["group"]) == ["young", "old"]


def test_three_groups_from_spec(tmp_path):
    groups = parse_groups("young:8-15, middle:25-45 ,old:46-75")
    assert groups.names == ("young", "middle", "old")
    path = write(tmp_path / "p.csv", "subject,age\n1,10\n2,30\n3,60\n4,45.5\n")
    df = read_participants(path, groups=groups)
    assert list(df["label"]) == [0, 1, 2]  # 45.5 fits no group: dropped
    assert parse_groups(groups.to_spec()) == groups


def test_default_groups_are_the_seed_study():
    assert DEFAULT_GROUPS.to_spec() == "young:8-15,old:25-75"
    assert DEFAULT_GROUPS.group_of(15) == "young" and DEFAULT_GROUPS.group_of(15.5) is None
    assert DEFAULT_GROUPS.group_of(25, 35) == "old" and DEFAULT_GROUPS.group_of(20, 30) is None
    assert parse_groups({"a": (1, 2), "b": (3, 4)}) == AgeGroups(("a", "b"), ((1, 2), (3, 4)))


@pytest.mark.parametrize(
    "spec, match",
    [
        ("young:8-15", "at least two"),
        ("young:8-15,old:12-30", "overlap"),
        ("young:15-8,old:25-75", "reversed"),
        ("young:8-15,young:25-75", "distinct"),
        ("young:8-15,old", "expected name:low-high"),
        ("young:8-15,old:abc", "not an age"),
    ],
)
def test_bad_group_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_groups(spec)


def test_parse_age_forms():
    assert parse_age("12") == (12.0, 12.0)
    assert parse_age(" 25 - 35 ") == (25.0, 35.0)
    assert parse_age("36+") == (36.0, math.inf)
    assert parse_age("") is None
    with pytest.raises(ValueError):
        parse_age("twelve")


def test_missing_columns_names_file_and_columns(tmp_path):
    path = write(tmp_path / "p.csv", "id,years\n1,10\n")
    with pytest.raises(InputError, match=r"found columns \['id', 'years'\]") as err:
        read_participants(path)
    assert err.value.path == str(path)
    with pytest.raises(InputError, match="'subject' column"):
        read_participants(write(tmp_path / "q.csv", "subject,sex\n1,F\n"))


def test_duplicate_subjects(tmp_path):
    path = write(tmp_path / "p.csv", "subject,age\n01,10\n02,30\n01,11\n")
    with pytest.raises(InputError, match=r"more than once: \['01'\]"):
        read_participants(path)


def test_unreadable_age_and_unknown_group_name_the_line(tmp_path):
    with pytest.raises(InputError, match="line 3, subject 2: age"):
        read_participants(write(tmp_path / "p.csv", "subject,age\n1,10\n2,old\n"))
    with pytest.raises(InputError, match="group 'adult' is not one of"):
        read_participants(write(tmp_path / "q.csv", "subject,group\n1,adult\n"))


def test_age_fitting_no_group_warns_and_strict_raises(tmp_path, caplog):
    path = write(tmp_path / "p.csv", "subject,age\n1,10\n2,20\n3,80\n4,\n5,40\n")
    with caplog.at_level(logging.WARNING, logger="hcp_cam.data.participants"):
        df = read_participants(path)
    assert list(df["subject"]) == ["1", "5"]
    assert "3 subject(s) fit no age group" in caplog.text
    for name in ("2 (age 20)", "3 (age 80)", "4 (age missing)"):
        assert name in caplog.text
    with pytest.raises(InputError, match="3 subject") as err:
        read_participants(path, strict=True)
    assert err.value.path == str(path)


def test_no_subject_fits_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="no subject fits"):
        read_participants(write(tmp_path / "p.csv", "subject,age\n1,20\n"))
    with pytest.raises(InputError, match="not found"):
        read_participants(tmp_path / "none.csv")


def test_match_warns_both_ways_and_keeps_the_intersection(tmp_path, caplog):
    for s in ("001", "002", "003"):
        make_subject(tmp_path / "data", s)
    table = read_participants(write(tmp_path / "p.csv", "subject,age\n001,10\n002,30\n004,12\n"))
    with caplog.at_level(logging.WARNING, logger="hcp_cam.data.participants"):
        acqs, rows = match_participants(discover_acquisitions(tmp_path / "data"), table)
    assert [a.subject for a in acqs] == ["001", "002"]
    assert list(rows["subject"]) == ["001", "002"]
    assert "have no data: 004" in caplog.text
    assert "no usable participants row (missing, or left out above): 003" in caplog.text


def test_match_without_overlap_raises(tmp_path):
    make_subject(tmp_path / "data", "100307")
    table = read_participants(write(tmp_path / "p.csv", "subject,age\n1,10\n2,30\n"))
    with pytest.raises(InputError, match="no subject has both data and a participants row"):
        match_participants(discover_acquisitions(tmp_path / "data"), table)


def test_ragged_row_is_reported_at_its_line_not_at_a_subject_id(tmp_path):
    """A first data row with one field too many made pandas take the first column as the index:
    the error quoted a subject ID ("line 125") of a three-line file."""
    path = write(tmp_path / "p.csv", "subject,age\n125,20,x\n126,30\n")
    with pytest.raises(InputError) as err:
        read_participants(path)
    message = str(err.value)
    assert message == (
        f"{path}: line 2 has 3 comma-separated fields but the header (line 1) has 2 (subject, age): "
        "extra value 'x'; remove it or name its column in the header"
    )
    assert "\n" not in message and err.value.path == str(path)
    # a ragged row further down, and a short one, name their own lines
    with pytest.raises(InputError, match=r"line 4 has 3 comma-separated fields .* extra value '1'"):
        read_participants(write(tmp_path / "q.csv", "subject,age\n1,10\n2,30\n3,40,1\n"))
    with pytest.raises(InputError, match=r"line 3 has 2 comma-separated field\(s\) but the header .* has 3"):
        read_participants(write(tmp_path / "r.csv", "subject,age,group\n1,10,young\n2,30\n"))
    with pytest.raises(InputError, match=r"line 2 has 3 tab-separated fields"):
        read_participants(write(tmp_path / "s.tsv", "subject\tage\n1\t10\tx\n"))


def test_trailing_commas_keep_ages_in_the_age_column(tmp_path):
    """Rows ending in a separator (spreadsheet export) made pandas shift every value one column left."""
    path = write(tmp_path / "p.csv", "subject,age,\n0012,9,\n100307,30,,\n,,\n000777,14.5,\n")
    df = read_participants(path)
    assert list(df["subject"]) == ["0012", "100307", "000777"]
    assert list(df["age"]) == [9.0, 30.0, 14.5]
    assert list(df["group"]) == ["young", "old", "young"]
    before = path.read_bytes()
    read_participants(path)
    assert path.read_bytes() == before  # the input is only read


def test_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path):
    text = 'subject,age,note\n1,10,"two\nlines"\n\n2,old,x\n'
    with pytest.raises(InputError, match="line 5, subject 2: age"):
        read_participants(write(tmp_path / "p.csv", text))
    with pytest.raises(InputError, match=r"empty subject on line\(s\) \[3\]"):
        read_participants(write(tmp_path / "q.csv", "subject,age\n1,10\n ,30\n"))
    with pytest.raises(
        InputError, match=r"line 1: the header names the column\(s\) \['age'\] more than once"
    ):
        read_participants(write(tmp_path / "r.csv", "subject,age,age\n1,10,11\n"))
    with pytest.raises(InputError, match="line 1: column 2 of the header has no name"):
        read_participants(write(tmp_path / "s.csv", "subject,,age\n1,x,10\n"))
    with pytest.raises(InputError, match=r"line 2: cannot read as a CSV/TSV table"):
        read_participants(write(tmp_path / "t.csv", 'subject,age\n1,"10\n'))
