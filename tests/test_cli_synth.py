"""Tests of `hcp-cam synth` through the real command-line entry point."""

from __future__ import annotations

import nibabel as nib
import pandas as pd
import pytest

from hcp_cam.cli import build_parser, main
from hcp_cam.cli.synth import resolve_options
from hcp_cam.synth import DEFAULT_SHAPE, MANIFEST

TINY_ARGS = ["--shape", "12", "14", "12", "--b0", "1", "--directions", "3", "--no-progress"]


def test_cli_writes_a_minimal_dataset(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["synth", str(out), "--subjects", "2", "--seed", "3", "--snr", "25", *TINY_ARGS]) == 0
    assert "wrote 2 subjects" in capsys.readouterr().out
    table = pd.read_csv(out / "participants.csv", dtype={"subject": str})
    assert sorted(table["group"]) == ["old", "young"]
    for sid in table["subject"]:
        img = nib.load(out / sid / "T1w" / "Diffusion" / "data.nii.gz")
        assert img.shape == (12, 14, 12, 10)
        assert (out / "derivatives" / "ground_truth" / f"{sid}_roi.nii.gz").exists()
    assert (out / MANIFEST).exists()


def test_cli_unprocessed_layout(tmp_path):
    out = tmp_path / "raw"
    assert (
        main(["synth", str(out), "--subjects", "1", "--layout", "unprocessed", "--runs", "1", *TINY_ARGS])
        == 0
    )
    assert len(list(out.rglob("*_3T_DWI_dir*_*.nii.gz"))) == 2
    assert not list(out.rglob("nodif_brain_mask.nii.gz"))


def test_cli_zero_subjects_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["synth", str(out), "--subjects", "0", *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hcp-cam synth: error:") and "subject" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_non_empty_target_exits_2_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["synth", str(out), "--subjects", "1", *TINY_ARGS]) == 2
    assert str(out) in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert main(["synth", str(out), "--subjects", "1", "--overwrite", *TINY_ARGS]) == 0
    assert (out / "keep.txt").exists() and (out / "participants.csv").exists()


@pytest.mark.parametrize("bad", [["--subjects", "abc"], ["--layout", "nifti"], ["--shape", "12", "14"]])
def test_cli_unparsable_arguments_exit_2(tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        main(["synth", str(tmp_path / "x"), *bad])
    assert e.value.code == 2
    assert not (tmp_path / "x").exists()


def test_cli_hcp_size_sets_the_benchmark_geometry_and_explicit_options_win(tmp_path):
    parser = build_parser()
    opts = resolve_options(parser.parse_args(["synth", str(tmp_path), "--hcp-size"]))
    assert opts["shape"] == (145, 174, 145) and opts["voxel_size"] == (1.25, 1.25, 1.25)
    assert opts["n_b0"] == 18 and opts["n_per_shell"] == 90
    opts = resolve_options(
        parser.parse_args(["synth", str(tmp_path), "--hcp-size", "--shape", "20", "22", "20"])
    )
    assert opts["shape"] == (20, 22, 20) and opts["n_per_shell"] == 90
    opts = resolve_options(parser.parse_args(["synth", str(tmp_path)]))
    assert opts["shape"] == DEFAULT_SHAPE and opts["n_b0"] == 3 and opts["n_subjects"] == 16
