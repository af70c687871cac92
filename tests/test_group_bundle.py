"""From the bundle to the group maps: misaligned tiny data, two folds trained and inferred with the
bundle's own commands, then the group step (the function the bundle's ``group_analysis`` key calls)."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bundle_helpers import CONFIGS, TINY_SHAPE, TinyData, output_of, run_bundle

from hcp_cam.group import bundle_step
from hcp_cam.synth import generate_dataset

FOLDS = 2


@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    root = tmp_path_factory.mktemp("group_bundle")
    ds = generate_dataset(
        root / "data", n_subjects=10, shape=TINY_SHAPE, seed=0, misalign=True, progress=False
    )
    (root / "cache").mkdir()
    data = TinyData(dataset_dir=ds.root, cache_dir=root / "cache")
    runs = []
    for k in range(FOLDS):
        out = root / f"fold{k}"
        for run_id, cfg in (("training", "train.json"), ("inference", "inference.json")):
            proc = run_bundle(run_id, CONFIGS / cfg, out, data, {"num_folds": FOLDS, "fold": k})
            assert proc.returncode == 0, output_of(proc)[-3000:]
        runs.append(out)
    return ds, runs


@pytest.fixture(scope="module")
def group(folds, tmp_path_factory):
    ds, runs = folds
    gt = ds.root / "derivatives" / "ground_truth"
    return bundle_step(
        "true", runs, tmp_path_factory.mktemp("group") / "out", template=str(gt / "template_fa.nii.gz"),
        atlas=str(gt / "atlas.nii.gz"), atlas_labels=str(gt / "atlas_labels.csv"), permutations=100,
        progress=False,
    )  # fmt: skip


def test_the_group_step_covers_the_cohort_with_out_of_fold_maps(folds, group, tmp_path):
    ds, runs = folds
    assert bundle_step("false", runs, tmp_path / "off") is None and not (tmp_path / "off").exists()
    res, out = group, group.out_dir
    summary = json.loads((out / "group.json").read_text())
    assert sorted(s for v in summary["subjects"].values() for s in v) == sorted(ds.subjects)
    assert summary["left_out"] == [] and summary["cam_class"] == "old"
    held_out = {
        e["subject"]: str(run)
        for run in runs
        for e in json.loads((run / "datalist.json").read_text())["test"]
    }
    qc = pd.read_csv(out / "registration_qc.csv", dtype={"subject": str})
    assert all(held_out[r.subject] == r.run for r in qc.itertuples())  # each from the fold that held it out
    assert (qc["correlation"] > 0.8).all()  # noisy FA fitted by the bundle against a noise-free template
    regions = pd.read_csv(out / "regions.csv").set_index("name")
    effect = regions.loc["effect_region"]
    assert effect["mean_fa_old"] < effect["mean_fa_young"] and effect["fa_p_value"] < 0.05
    assert summary["cam_tested_voxels"] > 0
    for f in (
        "group_difference_cam_t.nii.gz",
        "group_old_mean_fa.nii.gz",
        "group_overview.png",
        "clusters.csv",
    ):
        assert (out / f).is_file()
    cam = np.asarray(nib.load(out / "subjects" / f"{ds.subjects[0]}_cam.nii.gz").dataobj)
    assert np.isnan(cam).any() and np.isfinite(cam).any()  # the unknown voxels stay unknown
    assert res.regions is not None and len(res.regions) == len(regions)


def test_a_label_shuffled_cohort_gives_no_label_below_005(folds, group, tmp_path):
    ds, runs = folds
    gt = ds.root / "derivatives" / "ground_truth"
    shutil.copytree(group.out_dir / "transforms", tmp_path / "shuffled" / "transforms")  # registered once
    res = bundle_step(
        True, runs, tmp_path / "shuffled", template=str(gt / "template_fa.nii.gz"),
        atlas=str(gt / "atlas.nii.gz"), atlas_labels=str(gt / "atlas_labels.csv"), permutations=100,
        shuffle_groups=0, progress=False, figure=False,
    )  # fmt: skip
    assert res.qc["transform_reused"].all()
    assert (res.regions["p_value"] >= 0.05).all() and (res.regions["fa_p_value"] >= 0.05).all()
