"""The MONAI datalist (relative paths, loadable by MONAI) and the `hcp-cam datalist` command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from hcp_cam.cli import main
from hcp_cam.data import SPLITS, load_datalist, make_datalist, split_summary, write_datalist
from hcp_cam.errors import ConfigError, InputError

AGES = {"0101": "9", "0102": "10", "0103": "12-14", "0104": "15", "0105": "11", "0106": "8",
        "2001": "30", "2002": "26-30", "2003": "45", "2004": "70", "2005": "25", "2006": "60"}  # fmt: skip


def make_dataset(root: Path, ages: dict[str, str] = AGES, table: str = "participants.csv") -> Path:
    """Preprocessed layout (real 4x4x4x7 NIfTI, gradients, mask) for every subject, plus the table."""
    image = nib.Nifti1Image(np.ones((4, 4, 4, 7), np.float32), np.diag([1.25, 1.25, 1.25, 1]))
    mask = nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.diag([1.25, 1.25, 1.25, 1]))
    for subject in ages:
        folder = root / subject / "T1w" / "Diffusion"
        folder.mkdir(parents=True)
        nib.save(image, str(folder / "data.nii.gz"))
        nib.save(mask, str(folder / "nodif_brain_mask.nii.gz"))
        (folder / "bvals").write_text("0 " + "1000 " * 6 + "\n")
        (folder / "bvecs").write_text("0 1 0 0 1 0 0\n0 0 1 0 0 1 0\n0 0 0 1 0 0 1\n")
    sep = "\t" if table.endswith(".tsv") else ","
    (root / table).write_text(f"subject{sep}age\n" + "".join(f"{s}{sep}{a}\n" for s, a in ages.items()))
    return root


def test_datalist_entries_and_metadata(tmp_path):
    root = make_dataset(tmp_path / "ds")
    dl = make_datalist(root, seed=1)
    assert dl["labels"] == ["young", "old"]
    assert dl["groups"] == {"young": [8.0, 15.0], "old": [25.0, 75.0]}
    assert dl["seed"] == 1 and dl["num_folds"] is None and dl["fold"] is None
    assert dl["participants"] == "participants.csv"
    assert dl["numTraining"] + dl["numValidation"] + dl["numTest"] == len(AGES)
    entry = next(e for s in SPLITS for e in dl[s] if e["subject"] == "0103")
    assert entry == {
        "subject": "0103",
        "acquisition": "dwi",
        "dwi": "0103/T1w/Diffusion/data.nii.gz",
        "bvals": "0103/T1w/Diffusion/bvals",
        "bvecs": "0103/T1w/Diffusion/bvecs",
        "mask": "0103/T1w/Diffusion/nodif_brain_mask.nii.gz",
        "label": 0,
        "group": "young",
        "age": 13.0,
    }
    assert split_summary(dl) == {"training": {"young": 4, "old": 4}, "validation": {"young": 1, "old": 1},
                                 "test": {"young": 1, "old": 1}}  # fmt: skip


def test_written_datalist_loads_with_monai(tmp_path):
    root = make_dataset(tmp_path / "ds")
    out = write_datalist(make_datalist(root), tmp_path / "elsewhere" / "datalist.json")
    raw = json.loads(out.read_text())
    for name in SPLITS:
        for e in raw[name]:
            assert not Path(e["dwi"]).is_absolute() and (root / e["dwi"]).is_file()
        loaded = load_decathlon_datalist(out, data_list_key=name, base_dir=root)
        assert len(loaded) == len(raw[name])
        for e in loaded:
            for key in ("dwi", "bvals", "bvecs", "mask"):
                assert Path(e[key]).is_absolute() and Path(e[key]).is_file()
            assert isinstance(e["label"], int)
        # MONAI joins base_dir to any string that names an existing path, subject folders included
        assert all(Path(e["subject"]).is_dir() for e in loaded)
        ours = load_datalist(out, data_list_key=name, base_dir=root)
        assert [e["subject"] for e in ours] == [e["subject"] for e in raw[name]]
        assert [e["dwi"] for e in ours] == [e["dwi"] for e in loaded]


def test_tsv_participants_and_folds(tmp_path):
    root = make_dataset(tmp_path / "ds", table="participants.tsv")
    folds = [make_datalist(root, num_folds=3, fold=k, seed=0) for k in range(3)]
    tests = sorted(e["subject"] for dl in folds for e in dl["test"])
    assert tests == sorted(AGES)
    assert all(dl["num_folds"] == 3 and dl["test_fraction"] is None for dl in folds)
    with pytest.raises(ConfigError, match="fold must be one of 0..2"):
        make_datalist(root, num_folds=3, fold=3)
    with pytest.raises(ConfigError, match="without num_folds"):
        make_datalist(root, fold=1)


def test_missing_participants_table(tmp_path):
    root = make_dataset(tmp_path / "ds")
    (root / "participants.csv").unlink()
    with pytest.raises(InputError, match="participants.csv or participants.tsv"):
        make_datalist(root)


def test_unmatched_subjects_are_warned_about_and_left_out(tmp_path, caplog):
    root = make_dataset(tmp_path / "ds")
    table = tmp_path / "table.csv"
    rows = {**{s: a for s, a in AGES.items() if s != "0106"}, "9999": "50"}
    table.write_text("subject,age\n" + "".join(f"{s},{a}\n" for s, a in rows.items()))
    with caplog.at_level(logging.WARNING):
        dl = make_datalist(root, participants=table)
    subjects = {e["subject"] for s in SPLITS for e in dl[s]}
    assert subjects == set(AGES) - {"0106"}
    assert "have no data: 9999" in caplog.text and "0106" in caplog.text
    assert Path(dl["participants"]) == table.resolve()  # outside the dataset: absolute


def test_cli_writes_and_prints_summary(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "datalist.json"
    rc = main(["datalist", str(root), "--out", str(out), "--seed", "2", "--val", "0.2", "--test", "0.2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "young" in printed and "old" in printed and "hold-out, seed 2" in printed
    dl = json.loads(out.read_text())
    assert dl["seed"] == 2
    assert dl == json.loads(json.dumps(make_datalist(root, seed=2)))
    line = next(x for x in printed.splitlines() if x.strip().startswith("training"))
    assert line.split()[1:] == ["4", "4", "8"]


def test_cli_folds_and_groups(tmp_path):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "dl.json"
    argv = [
        "datalist",
        str(root),
        "--out",
        str(out),
        "--folds",
        "3",
        "--fold",
        "1",
        "--groups",
        "kids:8-15,adults:25+",
    ]
    assert main(argv) == 0
    dl = json.loads(out.read_text())
    assert dl["labels"] == ["kids", "adults"] and dl["fold"] == 1 and dl["num_folds"] == 3
    assert dl["groups"]["adults"] == [25.0, None]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--val", "0.45", "--test", "0.45"], "training would have no"),  # 6 per group: 3 + 3 + 0
        (["--val", "0.5", "--test", "0.5"], "must be below 1"),
        (["--groups", "young:8-15"], "at least two groups"),
        (["--folds", "7", "--fold", "0"], "would have no"),
        (["--participants", "missing.csv"], "not found"),
    ],
)
def test_cli_errors_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "out" / "datalist.json"
    rc = main(["datalist", str(root), "--out", str(out), *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("hcp-cam datalist: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_cli_empty_dataset_exit_2(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    out = tmp_path / "datalist.json"
    assert main(["datalist", str(tmp_path / "ds"), "--out", str(out)]) == 2
    assert "no diffusion acquisitions found" in capsys.readouterr().err
    assert not out.exists()


def test_zero_test_fraction_gives_an_empty_test_split_that_loads(tmp_path):
    root = make_dataset(tmp_path / "ds")
    out = write_datalist(make_datalist(root, test_fraction=0.0), tmp_path / "dl.json")
    assert json.loads(out.read_text())["test"] == []
    assert load_datalist(out, data_list_key="test", base_dir=root) == []
    assert len(load_datalist(out, data_list_key="training", base_dir=root)) == 10
    with pytest.raises(InputError, match="no 'nope' list"):
        load_datalist(out, data_list_key="nope")


def test_datalist_out_a_folder_exit_2_before_any_work(tmp_path, capsys):
    """`datalist --out DIR` raised IsADirectoryError (a traceback) after the dataset was read."""
    root = make_dataset(tmp_path / "ds")
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(["datalist", str(root), "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"hcp-cam datalist: error: {folder}: --out is a folder; expected a JSON file name, "
        f"e.g. --out {folder / 'datalist.json'}\n"
    )
    assert list(folder.iterdir()) == []


def test_datalist_out_under_a_file_or_onto_the_participants_table_exit_2(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    table = root / "participants.csv"
    before = table.read_bytes()
    assert main(["datalist", str(root), "--out", str(table)]) == 2
    err = capsys.readouterr().err
    assert "--out is the participants table, which would be overwritten" in err and str(table) in err
    assert len(err.splitlines()) == 1 and table.read_bytes() == before
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["datalist", str(root), "--out", str(blocker / "sub" / "dl.json")]) == 2
    err = capsys.readouterr().err
    assert f"--out lies under {blocker}, which is a file, not a folder" in err and len(err.splitlines()) == 1
    assert blocker.read_text() == "x"


def test_ragged_participants_row_exit_2_names_the_line(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    table = root / "participants.csv"
    lines = table.read_text().splitlines()
    lines[3] += ",extra"
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "dl.json"
    assert main(["datalist", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hcp-cam datalist: error: {table}: line 4 has 3 comma-separated fields")
    assert len(err.splitlines()) == 1 and not out.exists()
