"""From the bundle to the group maps: misaligned tiny data, two folds trained with the bundle, the
first inferred alone, the second with ``--group_analysis true`` over both folds (the step
``configs/inference.json`` wires), as a user runs them."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bundle_helpers import INFERENCE, TINY_SHAPE, TRAIN, TinyData, output_of, run_bundle, tree_snapshot

from hcp_cam.errors import ConfigError
from hcp_cam.group import bundle_step, check_bundle_step
from hcp_cam.synth import generate_dataset

FOLDS = 2
PERMS = 100


@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    root = tmp_path_factory.mktemp("group_bundle")
    ds = generate_dataset(
        root / "data", n_subjects=10, shape=TINY_SHAPE, seed=0, misalign=True, progress=False
    )
    (root / "cache").mkdir()
    data = TinyData(dataset_dir=ds.root, cache_dir=root / "cache")
    runs = [root / f"fold{k}" for k in range(FOLDS)]
    gt = ds.root / "derivatives" / "ground_truth"
    group_keys = {
        "group_analysis": True, "group_runs": [str(r) for r in runs], "group_template": str(gt / "template_fa.nii.gz"),
        "group_atlas": str(gt / "atlas.nii.gz"), "group_atlas_labels": str(gt / "atlas_labels.csv"),
        "group_permutations": PERMS,
    }  # fmt: skip
    for k, out in enumerate(runs):
        split = {"num_folds": FOLDS, "fold": k}
        proc = run_bundle("training", TRAIN, out, data, split)
        assert proc.returncode == 0, output_of(proc)[-3000:]
        last = k == FOLDS - 1  # the group step runs with the last fold's inference, over every fold
        proc = run_bundle("inference", INFERENCE, out, data, {**split, **(group_keys if last else {})})
        assert proc.returncode == 0, output_of(proc)[-3000:]
    return ds, data, runs, group_keys


def test_the_bundle_writes_group_maps_from_out_of_fold_cams(folds):
    ds, _, runs, _ = folds
    out = runs[-1] / "group"
    assert not (runs[0] / "group").exists()  # off by default
    summary = json.loads((out / "group.json").read_text())
    assert sorted(s for v in summary["subjects"].values() for s in v) == sorted(ds.subjects)
    assert summary["left_out"] == [] and summary["cam_class"] == "old" and summary["permutations"] == PERMS
    held_out = {
        e["subject"]: str(run)
        for run in runs
        for e in json.loads((run / "datalist.json").read_text())["test"]
    }
    qc = pd.read_csv(out / "registration_qc.csv", dtype={"subject": str})
    assert sorted(qc["subject"]) == sorted(ds.subjects)
    assert all(held_out[r.subject] == r.run for r in qc.itertuples())  # each from the fold that held it out
    assert (qc["correlation"] > 0.8).all() and not qc["flagged"].any()  # noisy FA vs a noise-free template
    regions = pd.read_csv(out / "regions.csv").set_index("name")
    effect = regions.loc["effect_region"]
    assert effect["mean_fa_old"] < effect["mean_fa_young"] and effect["fa_p_value"] < 0.05
    assert summary["cam_tested_voxels"] > 0
    assert summary["cam_scale"] == "zscore"  # inference.json's group_cam_scale reached the analysis
    for f in (
        "group_difference_cam_t.nii.gz",
        "group_old_mean_fa.nii.gz",
        "group_overview.png",
        "clusters.csv",
    ):
        assert (out / f).is_file()
    cam = np.asarray(nib.load(out / "subjects" / f"{ds.subjects[0]}_cam.nii.gz").dataobj)
    assert np.isnan(cam).any() and np.isfinite(cam).any()  # the unknown voxels stay unknown
    # the run report that follows the step shows the group maps and their tables
    page = (runs[-1] / "report.html").read_text(encoding="utf-8")
    assert "Atlas regions" in page and "effect_region" in page and "Registration quality" in page


def test_bad_group_keys_are_refused_before_the_cam_inference(folds, tmp_path):
    ds, data, runs, group_keys = folds
    before = tree_snapshot(runs[0])
    missing = tmp_path / "no_template.nii.gz"
    cases = [
        ({"group_template": str(missing)}, str(missing)),
        ({"group_template": None}, "group_atlas needs group_template"),
        ({"group_runs": [str(tmp_path)]}, "group_runs: not a run folder with CAM volumes"),
        ({"group_analysis": "maybe"}, "group_analysis must be true or false"),
    ]
    for change, match in cases:
        keys = {**group_keys, "group_runs": [str(runs[0])], **change}
        proc = run_bundle("inference", INFERENCE, runs[0], data, {"num_folds": FOLDS, "fold": 0, **keys})
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, output_of(proc)[-3000:]
        assert match in err[-1] and "Traceback" not in proc.stderr, err[-3:]
        assert tree_snapshot(runs[0]) == before  # no CAM rewritten, no group folder


def test_a_label_shuffled_cohort_gives_no_label_below_005(folds, tmp_path):
    ds, _, runs, keys = folds
    shutil.copytree(
        runs[-1] / "group" / "transforms", tmp_path / "shuffled" / "transforms"
    )  # registered once
    options = dict(template=keys["group_template"], atlas=keys["group_atlas"], atlas_labels=keys["group_atlas_labels"],
                   permutations=PERMS, shuffle_groups=0, progress=False, figure=False)  # fmt: skip
    assert check_bundle_step("true", runs, tmp_path / "shuffled", **options)
    res = bundle_step("true", runs, tmp_path / "shuffled", **options)
    assert res.qc["transform_reused"].all()
    assert (res.regions["p_value"] >= 0.05).all() and (res.regions["fa_p_value"] >= 0.05).all()
    assert bundle_step("false", runs, tmp_path / "off") is None and not (tmp_path / "off").exists()
    with pytest.raises(ConfigError, match="cam_scale must be one of zscore, raw; got 'percent'"):
        check_bundle_step("true", runs, tmp_path / "bad", **{**options, "cam_scale": "percent"})
    assert not (tmp_path / "bad").exists()
