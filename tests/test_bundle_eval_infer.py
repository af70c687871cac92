"""The bundle's ``evaluating`` and ``inference`` runs on the tiny training run's output."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bundle_helpers import EVALUATE, INFERENCE, output_of, run_bundle

TEST_METRIC_KEYS = (
    "subject_accuracy",
    "slice_accuracy",
    "roc_auc",
    "precision",
    "recall",
    "f1",
    "n_subjects",
    "n_slices",
    "majority_baseline",
    "prediction_spread",
    "constant_predictions",
)


@pytest.fixture(scope="module")
def evaluated(trained_run, tiny_data):
    out, train_proc = trained_run
    assert train_proc.returncode == 0, output_of(train_proc)[-4000:]
    return out, run_bundle("evaluating", EVALUATE, out, tiny_data)


@pytest.fixture(scope="module")
def inferred(trained_run, tiny_data):
    out, train_proc = trained_run
    assert train_proc.returncode == 0, output_of(train_proc)[-4000:]
    return out, run_bundle("inference", INFERENCE, out, tiny_data)


def _test_subjects(out) -> set[str]:
    return {e["subject"] for e in json.loads((out / "datalist.json").read_text())["test"]}


def test_evaluate_writes_metrics_predictions_and_figures(evaluated):
    out, proc = evaluated
    assert proc.returncode == 0, output_of(proc)[-4000:]
    metrics = json.loads((out / "metrics" / "test_metrics.json").read_text())
    missing = [k for k in TEST_METRIC_KEYS if k not in metrics]
    assert not missing, f"test_metrics.json lacks {missing}"
    subjects = _test_subjects(out)
    assert metrics["n_subjects"] == len(subjects)
    for k in ("subject_accuracy", "slice_accuracy", "precision", "recall", "f1", "majority_baseline"):
        assert 0.0 <= metrics[k] <= 1.0, (k, metrics[k])
    table = pd.read_csv(out / "metrics" / "test_subject_predictions.csv", dtype={"subject": str})
    assert set(table["subject"]) == subjects
    np.testing.assert_allclose(table[["prob_young", "prob_old"]].sum(axis=1), 1.0, atol=1e-5)
    # the reported subject accuracy is the one of the table it wrote
    assert metrics["subject_accuracy"] == pytest.approx(float(table["correct"].mean()))
    slices = pd.read_csv(out / "metrics" / "test_slice_predictions.csv", dtype={"subject": str})
    assert len(slices) == metrics["n_slices"]
    for name in ("test_pr.png", "test_roc.png", "test_confusion.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name


def test_inference_writes_cam_volumes_in_the_fa_grid(inferred):
    out, proc = inferred
    assert proc.returncode == 0, output_of(proc)[-4000:]
    cam_dir = out / "cam"
    summary = pd.read_csv(cam_dir / "summary.csv", dtype={"subject": str})
    assert set(summary["subject"]) == _test_subjects(out)
    for row in summary.itertuples():
        subject_dir = cam_dir / row.subject
        fa = nib.load(row.fa)
        cam = nib.load(subject_dir / f"{row.acquisition}_cam.nii.gz")
        cam01 = nib.load(subject_dir / f"{row.acquisition}_cam01.nii.gz")
        for img in (cam, cam01):
            assert img.shape == fa.shape
            np.testing.assert_allclose(img.affine, fa.affine, atol=1e-6)
            np.testing.assert_allclose(img.header.get_zooms()[:3], fa.header.get_zooms()[:3], atol=1e-6)
        data01 = np.asarray(cam01.dataobj)
        assert np.nanmin(data01) >= 0.0 and np.nanmax(data01) <= 1.0 + 1e-6
        assert np.nanmax(data01) > 0.5  # scaled to [0, 1] over the brain: the peak is 1
        box = json.loads((subject_dir / f"{row.acquisition}_bbox.json").read_text())
        peak = np.asarray(box["peak_voxel"])
        assert np.all(peak >= 0) and np.all(peak < fa.shape)
        # the world coordinates it reports are the FA's affine applied to the voxel
        np.testing.assert_allclose(box["peak_mm"], (fa.affine @ np.append(peak, 1.0))[:3], atol=1e-4)
        assert not box["box"]["empty"]
        assert np.all(np.asarray(box["box"]["max_index"]) < fa.shape)
        assert box["prob_young"] + box["prob_old"] == pytest.approx(1.0, abs=1e-5)
        assert (subject_dir / f"{row.acquisition}_overlay.png").stat().st_size > 1000


def test_inference_scores_localization_and_randomisation(inferred, tiny_data):
    out, proc = inferred
    assert proc.returncode == 0, output_of(proc)[-4000:]
    assert any((tiny_data.dataset_dir / "derivatives" / "ground_truth").glob("*_roi.nii.gz"))
    loc = pd.read_csv(out / "cam" / "localization.csv", dtype={"subject": str})
    assert set(loc["subject"]) == _test_subjects(out)
    for col in ("pointing_game", "energy_pointing_game", "energy_baseline", "iou", "dice", "box_iou"):
        assert loc[col].between(0.0, 1.0).all(), (col, loc[col].tolist())
    # a flat map's share is the region's share of the known voxels: well below 1 for a small region
    assert (loc["energy_baseline"] > 0).all() and (loc["energy_baseline"] < 0.5).all()
    check = json.loads((out / "cam" / "randomisation_check.json").read_text())
    assert isinstance(check["passed"], bool)
    assert -1.0 <= check["spearman"]["all_layers"] <= 1.0
    assert check["n_inputs"] > 0


def test_inference_writes_faithfulness_of_every_map(inferred):
    out, proc = inferred
    assert proc.returncode == 0, output_of(proc)[-4000:]
    table = pd.read_csv(out / "cam" / "faithfulness.csv", dtype={"subject": str})
    assert list(table.columns[:6]) == [
        "subject",
        "acquisition",
        "group",
        "map",
        "deletion_auc",
        "insertion_auc",
    ]
    assert set(table["subject"]) == _test_subjects(out)
    assert (
        table.groupby(["subject", "acquisition"])["map"].apply(list)
        == [["cam", "gradcam", "gradcampp", "random", "fa"]] * len(_test_subjects(out))
    ).all()
    for col in ("deletion_auc", "insertion_auc", "prob_original"):
        assert table[col].between(0.0, 1.0).all(), (col, table[col].tolist())
    assert (table["class"] == "old").all()
    curves = pd.read_csv(out / "cam" / "faithfulness_curves.csv", dtype={"subject": str})
    assert len(curves) == len(table) * 2 * 8  # deletion and insertion at the 8 default steps
    first = curves[(curves["curve"] == "deletion") & (curves["fraction"] == 0.0)]
    # every curve starts at the intact volume: the subject's probability as the CAM summary reports it
    summary = pd.read_csv(out / "cam" / "summary.csv", dtype={"subject": str}).set_index("subject")
    for r in first.itertuples():
        assert r.probability == pytest.approx(summary.loc[r.subject, "prob_old"], abs=0.05)
    assert (out / "cam" / "faithfulness.png").stat().st_size > 5000


def test_data_randomisation_against_a_run_on_permuted_labels(inferred, tiny_data, tmp_path):
    out, proc = inferred
    assert proc.returncode == 0, output_of(proc)[-4000:]
    perm = tmp_path / "permuted"
    quick = {"label_permutation_seed": 1, "cam_faithfulness": False, "cam_randomisation_check": False}
    train = run_bundle("training", INFERENCE[0], perm, tiny_data, {"label_permutation_seed": 1})
    assert train.returncode == 0, output_of(train)[-4000:]
    datalist = json.loads((perm / "datalist.json").read_text())
    assert datalist["label_permutation"]["seed"] == 1
    assert _test_subjects(perm) == _test_subjects(out)  # the same split, the labels shuffled
    # the permuted run's folder is another configuration than the real run's
    refused = run_bundle("training", INFERENCE[0], out, tiny_data, {"label_permutation_seed": 1})
    assert refused.returncode != 0 and "label_permutation_seed" in output_of(refused)
    infer = run_bundle("inference", INFERENCE, perm, tiny_data, quick)
    assert infer.returncode == 0, output_of(infer)[-4000:]
    real = run_bundle(
        "inference", INFERENCE, out, tiny_data,
        {"cam_faithfulness": False, "cam_randomisation_check": False, "data_randomisation_run": str(perm)},
    )  # fmt: skip
    assert real.returncode == 0, output_of(real)[-4000:]
    check = json.loads((out / "cam" / "data_randomisation.json").read_text())
    assert check["permuted_run"] == str(perm) and check["label_permutation"]["seed"] == 1
    assert check["n_acquisitions"] == len(_test_subjects(out))
    assert -1.0 <= check["spearman"]["mean"] <= 1.0 and isinstance(check["passed"], bool)
    assert {p["subject"] for p in check["per_acquisition"]} == _test_subjects(out)


def test_evaluate_reports_calls_calibrated_on_the_validation_subjects_beside_the_uncalibrated(evaluated):
    out, proc = evaluated
    assert proc.returncode == 0, output_of(proc)[-4000:]
    metrics = json.loads((out / "metrics" / "test_metrics.json").read_text())
    fit = json.loads((out / "metrics" / "calibration.json").read_text())
    assert fit["method"] == "threshold" and metrics["calibration"] == fit
    validation = {e["subject"] for e in json.loads((out / "datalist.json").read_text())["validation"]}
    fitted = pd.read_csv(out / "metrics" / "validation_subject_predictions.csv", dtype={"subject": str})
    assert set(fitted["subject"]) == validation and fit["n_validation_subjects"] == len(validation)
    table = pd.read_csv(out / "metrics" / "test_subject_predictions.csv", dtype={"subject": str})
    # the calibrated call is the validation threshold applied to the uncalibrated subject probability
    assert (table["calibrated_predicted"] == (table["prob_old"] > fit["threshold"]).astype(int)).all()
    assert metrics["calibrated_subject_accuracy"] == pytest.approx(float(table["calibrated_correct"].mean()))
    # the uncalibrated accuracy stays as it was, beside the calibrated one
    assert metrics["subject_accuracy"] == pytest.approx(float(table["correct"].mean()))
    page = (out / "report.html").read_text()
    assert "Accuracy, calibrated on the validation subjects (threshold)" in page


def test_evaluate_and_inference_end_with_the_run_report(evaluated, inferred):
    """Both runs write ``report.html`` at their end; after inference it holds the CAM viewer of every
    test subject (evaluating ran first, so inference rewrote the page with what exists then)."""
    for _, proc in (evaluated, inferred):
        assert proc.returncode == 0, output_of(proc)[-4000:]
    out = inferred[0]
    page = (out / "report.html").read_text()
    metrics = json.loads((out / "metrics" / "test_metrics.json").read_text())
    assert f"{metrics['subject_accuracy']:.3f}" in page
    for subject in _test_subjects(out):
        assert subject in page
    assert "report.html" in output_of(inferred[1])
