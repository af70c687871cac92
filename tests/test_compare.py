"""The comparison table from synthetic bundle run folders (two networks x two folds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hcp_cam.cli import main
from hcp_cam.errors import InputError
from hcp_cam.reports.compare import compare_runs, format_markdown, read_run, write_comparison

# arch, fold, best validation accuracy, test slice acc, test subject acc, subject AUC, baseline
RUNS = [
    ("alexnet", 0, 0.80, 0.70, 0.75, 0.80, 0.5),
    ("alexnet", 1, 0.90, 0.76, 0.85, 0.90, 0.5),
    ("googlenet", 0, 0.95, 0.88, 0.90, 0.96, 0.6),
    ("googlenet", 1, 0.85, 0.80, 0.80, None, 0.6),  # AUC undefined on this fold
]


def make_run(root, arch, fold, best_val, slice_acc, subj_acc, auc, baseline):
    run = root / f"{arch}_fold{fold}"
    (run / "metrics").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": arch, "fold": fold, "num_folds": 2, "seed": 0}))
    val = [best_val - 0.2, best_val, best_val - 0.05]  # the best is not the last epoch
    pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.7, 0.5, 0.4],
            "train_accuracy": [0.6, 0.8, 0.9],
            "val_loss": [0.7, 0.6, 0.6],
            "val_accuracy": val,
        }
    ).to_csv(run / "metrics" / "history.csv", index=False)
    metrics = {
        "subject_accuracy": subj_acc,
        "slice_accuracy": slice_acc,
        "roc_auc": float("nan") if auc is None else auc,  # json writes NaN, as Python's json does
        "precision": 0.8,
        "recall": 0.7,
        "f1": 0.75,
        "n_subjects": 10,
        "n_slices": 480,
        "majority_baseline": baseline,
    }
    (run / "metrics" / "test_metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture
def runs(tmp_path):
    return [make_run(tmp_path / "runs", *r) for r in RUNS]


def test_read_run(runs):
    rec = read_run(runs[0])
    assert rec["arch"] == "alexnet" and rec["fold"] == 0 and rec["num_folds"] == 2
    assert rec["best_val_accuracy"] == pytest.approx(0.80)
    assert rec["subject_accuracy"] == 0.75 and rec["n_slices"] == 480


def test_compare_table_values(runs):
    table = compare_runs(runs)
    assert list(table["arch"]) == ["alexnet", "googlenet"]
    a, g = table.iloc[0], table.iloc[1]
    assert a["n_folds"] == 2 and a["folds"] == "0;1"
    assert a["val_accuracy_mean"] == pytest.approx(0.85)
    assert a["val_accuracy_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert a["test_slice_accuracy_mean"] == pytest.approx(0.73)
    assert a["test_subject_accuracy_mean"] == pytest.approx(0.80)
    assert a["test_subject_accuracy_std"] == pytest.approx(np.std([0.75, 0.85], ddof=1))
    assert a["test_subject_auc_mean"] == pytest.approx(0.85)
    assert a["majority_baseline_mean"] == pytest.approx(0.5)
    assert a["n_test_subjects"] == 20
    # the NaN AUC is left out: one fold remains, so no std
    assert g["test_subject_auc_mean"] == pytest.approx(0.96) and math.isnan(g["test_subject_auc_std"])


def test_write_csv_and_markdown(runs, tmp_path):
    table = compare_runs(runs)
    paths = write_comparison(table, tmp_path / "out" / "table")
    assert [p.name for p in paths] == ["table.csv", "table.md"]
    back = pd.read_csv(paths[0])
    assert back["test_subject_accuracy_mean"].dtype == np.float64
    np.testing.assert_allclose(back["test_subject_accuracy_mean"], [0.80, 0.85])
    md = paths[1].read_text()
    lines = md.strip().splitlines()
    assert lines[0].startswith("| Network | Validation accuracy")
    assert (
        lines[2]
        == "| alexnet | 0.85 ± 0.07 | 0.73 ± 0.04 | 0.80 ± 0.07 | 0.85 ± 0.07 | 0.50 ± 0.00 | n/a | n/a | n/a | n/a | 2 |"
    )
    assert (
        lines[3]
        == "| googlenet | 0.90 ± 0.07 | 0.84 ± 0.06 | 0.85 ± 0.07 | 0.96 | 0.60 ± 0.00 | n/a | n/a | n/a | n/a | 2 |"
    )
    assert md == format_markdown(table)


def test_missing_file_names_it(runs):
    (runs[1] / "metrics" / "test_metrics.json").unlink()
    with pytest.raises(InputError, match=r"alexnet_fold1/metrics/test_metrics.json: file not found"):
        compare_runs(runs)


def test_tolerant_config_and_history(tmp_path):
    run = make_run(tmp_path, "vgg16", 0, 0.8, 0.7, 0.7, 0.7, 0.5)
    (run / "config.json").write_text(json.dumps({"network": "vgg16"}))  # no fold, other key name
    pd.DataFrame({"epoch": [1], "train_loss": [0.5]}).to_csv(run / "metrics" / "history.csv", index=False)
    table = compare_runs([run])
    assert table.iloc[0]["arch"] == "vgg16" and table.iloc[0]["n_folds"] == 1
    assert math.isnan(table.iloc[0]["val_accuracy_mean"])
    assert "| vgg16 | n/a | 0.70 | 0.70 | 0.70 | 0.50 | n/a | n/a | n/a | n/a | 1 |" in format_markdown(table)


def test_cli_writes_tables(runs, tmp_path, capsys):
    prefix = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(prefix)]) == 0
    assert (tmp_path / "cmp.csv").is_file() and (tmp_path / "cmp.md").is_file()
    assert "| googlenet |" in capsys.readouterr().out
    assert main(["compare", str(runs[0]), "--out", str(tmp_path / "only"), "--format", "md"]) == 0
    assert (tmp_path / "only.md").is_file() and not (tmp_path / "only.csv").exists()


def test_cli_errors_exit_2(runs, tmp_path, capsys):
    (runs[0] / "config.json").write_text("{not json")
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "not valid JSON" in err
    assert not list(tmp_path.glob("x*"))  # nothing half-written
    assert main(["compare", str(runs[1]), "--out", str(tmp_path / "y"), "--format", "xlsx"]) == 2
    assert main(["compare", str(tmp_path / "nope"), "--out", str(tmp_path / "z")]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_localization_columns_average_the_cam_class_group(runs):
    """Pointing game and energy share come from cam/localization.csv, over the subjects of the
    group the CAM is for (the group with the effect); the other group does not count."""
    for fold, hits in ((0, [1, 0]), (1, [1, 1])):
        run = [r for r in runs if r.name == f"alexnet_fold{fold}"][0]
        (run / "cam").mkdir()
        pd.DataFrame(
            {
                "subject": ["a", "b", "c"],
                "group": ["old", "old", "young"],
                "cam_class": ["old"] * 3,
                "pointing_game": [*hits, 1],
                "peak_distance": [0.0, 5.0, 0.0],
                "energy_pointing_game": [0.5, 0.25, 0.9],
                "energy_baseline": [0.1, 0.2, 0.3],
            }
        ).to_csv(run / "cam" / "localization.csv", index=False)
    row = compare_runs(runs).set_index("arch").loc["alexnet"]
    np.testing.assert_allclose(row["pointing_game_mean"], (0.5 + 1.0) / 2)
    np.testing.assert_allclose(row["energy_pointing_game_mean"], 0.375)
    np.testing.assert_allclose(row["energy_baseline_mean"], 0.15)
    np.testing.assert_allclose(row["peak_distance_mean"], 2.5)
    assert "0.75 ± 0.35" in format_markdown(compare_runs(runs))
