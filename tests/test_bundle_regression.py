"""The bundle with ``task regression`` and with three age groups, on a tiny graded synthetic dataset.

Real bundle runs (training, evaluating, inference) as a user runs them; the end-to-end numbers of a
longer run (MAE against the mean-age baseline, correlation, localization) are in docs/results.md
(``bash docs/make_regression.sh``).
"""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from bundle_helpers import EVALUATE, INFERENCE, TINY_SHAPE, TRAIN, TinyData, output_of, run_bundle

from hcp_cam.cli import main

N_SUBJECTS = 12
THREE_GROUPS = "young:8-30,middle:31-52,old:53-75"


@pytest.fixture(scope="module")
def graded_data(tmp_path_factory):
    from hcp_cam.synth import generate_dataset

    root = tmp_path_factory.mktemp("graded")
    generate_dataset(
        root / "data", n_subjects=N_SUBJECTS, shape=TINY_SHAPE, seed=0, age_effect="graded", progress=False
    )
    (root / "cache").mkdir()
    return TinyData(root / "data", root / "cache")


@pytest.fixture(scope="module")
def regression_run(graded_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("regression") / "run"
    keys = {"task": "regression"}
    procs = {rid: run_bundle(rid, cfg, out, graded_data, keys) for rid, cfg in (("training", TRAIN), ("evaluating", EVALUATE), ("inference", INFERENCE))}  # fmt: skip
    return out, procs


@pytest.fixture(scope="module")
def three_group_run(graded_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("three") / "run"
    keys = {"groups": THREE_GROUPS, "num_classes": 3, "best_metric": "subject_balanced_accuracy"}
    procs = {
        "training": run_bundle("training", TRAIN, out, graded_data, keys),
        "evaluating": run_bundle("evaluating", EVALUATE, out, graded_data, keys),
        "inference": run_bundle(
            "inference", INFERENCE, out, graded_data, {**keys, "cam_class": "each_vs_rest"}
        ),
    }
    return out, procs


def _ok(procs, *ids):
    for rid in ids:
        assert procs[rid].returncode == 0, f"{rid}:\n{output_of(procs[rid])[-4000:]}"


def test_regression_trains_one_output_selected_by_subject_mae(regression_run):
    out, procs = regression_run
    _ok(procs, "training")
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "regression" and config["best_metric"] == "auto"
    state = torch.load(out / "checkpoints" / "model.pt", weights_only=True)
    assert state["classifier.weight"].shape[0] == 1  # one output: the age
    history = pd.read_csv(out / "metrics" / "history.csv")
    for column in ("train_mae", "val_mae", "val_subject_mae", "val_mean_age_baseline", "val_selection_score"):
        assert history[column].notna().all(), column
    assert (out / "figures" / "mae.png").stat().st_size > 1000
    datalist = json.loads((out / "datalist.json").read_text())
    train_ages = {e["subject"]: e["age"] for e in datalist["training"]}
    assert datalist["target_scale"]["train_mean"] == pytest.approx(np.mean(list(train_ages.values())))
    n_all = sum(len({e["subject"] for e in datalist[s]}) for s in ("training", "validation", "test"))
    assert n_all == N_SUBJECTS  # no age left out, as a two-group split would leave the middle ages


def test_regression_report_is_consistent_with_its_tables(regression_run):
    out, procs = regression_run
    _ok(procs, "training", "evaluating")
    m = json.loads((out / "metrics" / "test_metrics.json").read_text())
    subjects = pd.read_csv(out / "metrics" / "test_subject_predictions.csv", dtype={"subject": str})
    assert list(subjects.columns[:4]) == ["subject", "acquisition", "age", "predicted_age"]
    assert m["n_subjects"] == len(subjects)
    # the reported numbers are those of the table it wrote
    assert m["mae"] == pytest.approx(np.abs(subjects["predicted_age"] - subjects["age"]).mean())
    np.testing.assert_allclose(subjects["brain_age_gap"], subjects["predicted_age"] - subjects["age"])
    assert m["pearson_r"] == pytest.approx(np.corrcoef(subjects["age"], subjects["predicted_age"])[0, 1])
    baseline = m["target_scale"]["train_mean"]
    assert m["mean_age_baseline"] == pytest.approx(np.abs(subjects["age"] - baseline).mean())
    slices = pd.read_csv(out / "metrics" / "test_slice_predictions.csv", dtype={"subject": str})
    means = slices.groupby("subject")["predicted_age"].mean()
    np.testing.assert_allclose(
        subjects.set_index("subject")["predicted_age"], means[subjects["subject"]], rtol=1e-6
    )
    # the age-bias correction is reported apart, fitted on the validation subjects
    fit = json.loads((out / "metrics" / "calibration.json").read_text())
    assert fit["method"] == "linear_age_bias" and fit["n_validation_subjects"] >= 2
    assert m["bias_correction"]["slope"] == pytest.approx(fit["slope"])
    corrected = pd.read_csv(out / "metrics" / "test_bias_correction.csv", dtype={"subject": str})
    expected = (
        corrected["predicted_age"] + corrected["age"] - (fit["intercept"] + fit["slope"] * corrected["age"])
    )
    np.testing.assert_allclose(corrected["bias_corrected_predicted_age"], expected, rtol=1e-6)
    assert "bias_corrected_predicted_age" not in subjects  # never applied to the predictions
    for name in ("test_age_scatter.png", "test_age_residuals.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name
    # the run's page scores it as a regressor: MAE beside the baseline, no accuracy of a classifier
    page = (out / "report.html").read_text()
    assert f"subject MAE {m['mae']:.2f} y (mean-age baseline {m['mean_age_baseline']:.2f} y" in page
    assert "Age-bias correction (reported apart" in page and "subject accuracy" not in page
    assert f"{subjects['predicted_age'].iloc[0]:.3f}" in page  # the subjects' predicted ages


def test_regression_maps_the_output_in_the_fa_grid(regression_run):
    out, procs = regression_run
    _ok(procs, "training", "evaluating", "inference")
    summary = pd.read_csv(out / "cam" / "summary.csv", dtype={"subject": str})
    subjects = pd.read_csv(out / "metrics" / "test_subject_predictions.csv", dtype={"subject": str})
    assert set(summary["subject"]) == set(subjects["subject"])
    assert (summary["cam_class"] == "age").all() and "prob_age" not in summary
    # the CAM run saw the trained slices: its mean output is the evaluation's predicted age
    merged = summary.merge(subjects, on="subject", suffixes=("_cam", ""))
    np.testing.assert_allclose(merged["predicted_age_cam"], merged["predicted_age"], rtol=1e-4)
    for row in summary.itertuples():
        fa = nib.load(row.fa)
        cam = nib.load(out / "cam" / row.subject / f"{row.acquisition}_cam.nii.gz")
        assert cam.shape == fa.shape and np.allclose(cam.affine, fa.affine, atol=1e-6)
        assert np.abs(np.asarray(cam.dataobj)).max() > 0
    loc = pd.read_csv(out / "cam" / "localization.csv", dtype={"subject": str})
    assert "age" in loc and loc["pointing_game"].between(0, 1).all()
    assert json.loads((out / "cam" / "randomisation_check.json").read_text())["n_inputs"] > 0


def test_compare_tables_regression_and_classification_runs(regression_run, trained_run, tmp_path, capsys):
    out, procs = regression_run
    _ok(procs, "training", "evaluating", "inference")
    trained, proc = trained_run
    assert proc.returncode == 0, output_of(proc)[-3000:]
    # a copy: the trained run is shared by the whole session, its test metrics must stay as they are
    classifier = tmp_path / "classifier"
    shutil.copytree(trained, classifier, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "cam*"))
    (classifier / "metrics").mkdir(exist_ok=True)
    (classifier / "metrics" / "test_metrics.json").write_text(
        json.dumps({"subject_accuracy": 1.0, "slice_accuracy": 0.5, "roc_auc": 1.0, "majority_baseline": 0.5})
    )
    assert main(["compare", str(out), str(classifier), "--out", str(tmp_path / "cmp")]) == 0
    md = capsys.readouterr().out
    assert (
        "| Network | Validation MAE (subjects, y) | Test MAE (subjects, y) | Mean-age baseline MAE (y)" in md
    )
    assert "| Network | Validation accuracy (slices)" in md
    table = pd.read_csv(tmp_path / "cmp.csv")
    reg = table[table["task"] == "regression"].iloc[0]
    m = json.loads((out / "metrics" / "test_metrics.json").read_text())
    assert reg["test_subject_mae_mean"] == pytest.approx(m["mae"])
    assert reg["mae_ratio_mean"] == pytest.approx(m["mae_ratio"])


def test_three_groups_train_a_three_class_network_with_per_class_reports_and_maps(
    three_group_run, tmp_path, capsys
):
    out, procs = three_group_run
    _ok(procs, "training", "evaluating", "inference")
    assert torch.load(out / "checkpoints" / "model.pt", weights_only=True)["classifier.weight"].shape[0] == 3
    history = pd.read_csv(out / "metrics" / "history.csv")
    assert history["val_selection_score"].notna().all() and history["val_balanced_accuracy"].notna().all()
    m = json.loads((out / "metrics" / "test_metrics.json").read_text())
    assert m["labels"] == ["young", "middle", "old"]
    assert set(m["per_class"]) == {"young", "middle", "old"}
    assert m["balanced_accuracy"] == pytest.approx(
        np.mean([m["per_class"][c]["recall"] for c in m["labels"]])
    )
    assert (
        json.loads((out / "metrics" / "calibration.json").read_text())["method"] == "none"
    )  # two classes only
    table = pd.read_csv(out / "metrics" / "test_subject_predictions.csv", dtype={"subject": str})
    assert {"prob_young", "prob_middle", "prob_old"} <= set(table.columns)
    assert (out / "figures" / "test_confusion.png").stat().st_size > 1000
    for name in ("young", "middle", "old"):
        folder = out / f"cam_{name}_vs_rest"
        summary = pd.read_csv(folder / "summary.csv", dtype={"subject": str})
        assert (summary["cam_class"] == f"{name} vs rest").all()
        row = summary.iloc[0]
        assert (folder / row["subject"] / f"{row['acquisition']}_cam.nii.gz").is_file()
        assert (folder / "localization.csv").is_file()
    # hcp-cam compare tables its balanced accuracy (a two-class table has no such column)
    assert main(["compare", str(out), "--out", str(tmp_path / "cmp")]) == 0
    assert "| Test accuracy (subjects) | Test balanced accuracy (subjects) |" in capsys.readouterr().out
    row = pd.read_csv(tmp_path / "cmp.csv").iloc[0]
    assert row["test_balanced_accuracy_mean"] == pytest.approx(m["balanced_accuracy"])


def test_bad_task_and_bad_ages_exit_2_with_one_line(graded_data, tmp_path):
    out = tmp_path / "run"
    proc = run_bundle("training", TRAIN, out, graded_data, {"task": "segmentation"})
    assert proc.returncode == 2, output_of(proc)[-3000:]
    assert "task must be one of classification, regression; got 'segmentation'" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    # a non-numeric age: the file and the line; an age range: used at its midpoint, with a warning
    data = tmp_path / "data"
    shutil.copytree(graded_data.dataset_dir, data)
    table = pd.read_csv(data / "participants.csv", dtype=str)
    table.loc[3, "age"] = "unknown"
    table.to_csv(data / "participants.csv", index=False)
    bad = TinyData(data, tmp_path / "cache")
    proc = run_bundle("training", TRAIN, out, bad, {"task": "regression"})
    assert proc.returncode == 2, output_of(proc)[-3000:]
    assert f"line 5, subject {table.loc[3, 'subject']}: age 'unknown' is not an age" in proc.stderr
    assert str(data / "participants.csv") in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "checkpoints").exists()


def test_hcp_cam_cam_maps_a_regression_checkpoint_and_reports_the_age(regression_run, tmp_path):
    out, procs = regression_run
    _ok(procs, "training", "inference")
    summary = pd.read_csv(out / "cam" / "summary.csv", dtype={"subject": str})
    row = summary.iloc[0]
    prefix = tmp_path / "one"
    assert (
        main(["cam", row["fa"], "--checkpoint", str(out / "checkpoints" / "model.pt"), "--out", str(prefix)])
        == 0
    )
    box = json.loads((tmp_path / "one_bbox.json").read_text())
    # the same network, slices and scale as the bundle's inference: the same predicted age
    assert box["cam_class"] == "age" and box["predicted_age"] == pytest.approx(row["predicted_age"], rel=1e-4)
    cam = np.asarray(nib.load(tmp_path / "one_cam.nii.gz").dataobj)
    bundle_cam = np.asarray(
        nib.load(out / "cam" / row["subject"] / f"{row['acquisition']}_cam.nii.gz").dataobj
    )
    np.testing.assert_allclose(cam, bundle_cam, rtol=1e-4, atol=1e-5)
