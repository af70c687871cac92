"""``hcp-cam compare``'s faithfulness and repeatability tables from synthetic run folders."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from test_compare import RUNS, make_run

from hcp_cam.cli import main
from hcp_cam.reports.compare import compare_runs
from hcp_cam.reports.explanations import faithfulness_table, format_table_markdown, repeatability_table

SHAPE = (10, 12, 8)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


@pytest.fixture
def runs(tmp_path):
    return [make_run(tmp_path / "runs", *r) for r in RUNS]


def _faithfulness(run, cam_deletion: list[float], random_deletion: list[float]):
    rows = []
    for i, (c, r) in enumerate(zip(cam_deletion, random_deletion, strict=True)):
        for name, d in (("cam", c), ("random", r)):
            rows.append({"subject": f"s{i}", "acquisition": "dwi", "group": "old", "map": name,
                         "deletion_auc": d, "insertion_auc": 1 - d, "class": "old", "prob_original": 0.9})  # fmt: skip
    # a young subject: not averaged for the map of "old"
    rows.append({"subject": "y", "acquisition": "dwi", "group": "young", "map": "cam",
                 "deletion_auc": 0.0, "insertion_auc": 0.0, "class": "old", "prob_original": 0.1})  # fmt: skip
    (run / "cam").mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(run / "cam" / "faithfulness.csv", index=False)


def test_faithfulness_table_averages_the_mapped_group_per_fold(runs):
    _faithfulness(runs[0], [0.2, 0.4], [0.5, 0.3])
    _faithfulness(runs[1], [0.1, 0.3], [0.6, 0.7])
    table = faithfulness_table(runs).set_index(["arch", "map"])
    cam = table.loc[("alexnet", "cam")]
    assert cam["n_folds"] == 2 and cam["n_subjects"] == 4
    np.testing.assert_allclose(cam["deletion_auc_mean"], (0.3 + 0.2) / 2)
    np.testing.assert_allclose(cam["deletion_auc_std"], np.std([0.3, 0.2], ddof=1))
    np.testing.assert_allclose(cam["insertion_auc_mean"], 1 - 0.25)
    assert cam["below_random"] == "3/4"  # s1 of fold 0 is the one above
    assert table.loc[("alexnet", "random"), "below_random"] == ""
    assert ("googlenet", "cam") not in table.index  # no faithfulness.csv in its runs
    md = format_table_markdown(faithfulness_table(runs), "faithfulness")
    assert "| alexnet | cam | 0.25 ± 0.07 | 0.75 ± 0.07 | 3/4 | 2 |" in md


def _cams(run, maps):
    rows = []
    for subject, data in maps.items():
        (run / "cam" / subject).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), run / "cam" / subject / "dwi_cam.nii.gz")
        rows.append({"split": "test", "subject": subject, "acquisition": "dwi"})
    pd.DataFrame(rows).to_csv(run / "cam" / "summary.csv", index=False)


def test_repeatability_within_and_between_networks(runs, tmp_path, capsys):
    rng = np.random.default_rng(0)
    g = np.indices(SHAPE).astype(float)
    blob = np.exp(-((g[0] - 5) ** 2 + (g[1] - 6) ** 2 + (g[2] - 4) ** 2) / 6.0)
    subjects = ("s1", "s2", "s3")
    # alexnet: the same blob in both folds (repeatable); googlenet: noise (not repeatable)
    for run in runs:
        arch = run.name.split("_")[0]
        maps = {
            s: blob + 0.01 * rng.standard_normal(SHAPE) if arch == "alexnet" else rng.random(SHAPE)
            for s in subjects
        }
        _cams(run, maps)
    table = repeatability_table(runs).set_index(["comparison", "arch_a", "arch_b"])
    alex = table.loc[("within", "alexnet", "alexnet")]
    assert alex["n_run_pairs"] == 1 and alex["n_maps"] == 3
    assert alex["dice_top_mean"] > 0.8 and alex["spearman_mean"] > 0.8
    goog = table.loc[("within", "googlenet", "googlenet")]
    assert goog["dice_top_mean"] < 0.4 and abs(goog["spearman_mean"]) < 0.2
    between = table.loc[("between", "alexnet", "googlenet")]
    assert between["n_run_pairs"] == 2 and between["n_maps"] == 6  # fold 0 with fold 0, 1 with 1
    # the CLI writes both tables beside the comparison
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "repeatability:" in out and "| within | alexnet |" in out
    assert (tmp_path / "cmp_repeatability.csv").is_file() and (tmp_path / "cmp_repeatability.md").is_file()
    assert not (tmp_path / "cmp_faithfulness.csv").exists()  # no run has faithfulness.csv
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "bare"), "--no-explanations"]) == 0
    assert not (tmp_path / "bare_repeatability.csv").exists()


def test_localization_counts_only_the_test_subjects_when_every_split_is_mapped(runs):
    run = runs[0]
    (run / "cam").mkdir()
    pd.DataFrame(
        {
            "split": ["test", "test", "training"],
            "subject": ["a", "b", "c"],
            "group": ["old"] * 3,
            "cam_class": ["old"] * 3,
            "pointing_game": [1, 0, 0],
            "peak_distance": [0.0, 4.0, 9.0],
            "energy_pointing_game": [0.4, 0.2, 0.0],
            "energy_baseline": [0.1, 0.1, 0.1],
        }
    ).to_csv(run / "cam" / "localization.csv", index=False)
    row = compare_runs([run]).iloc[0]
    assert row["pointing_game_mean"] == pytest.approx(0.5)
    assert row["peak_distance_mean"] == pytest.approx(2.0)
