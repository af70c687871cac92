"""Repeatability of maps (top-10% Dice, Spearman), the data-randomisation check and permuted labels."""

from __future__ import annotations

import json
from collections import Counter

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hcp_cam.cam.data_randomisation import data_randomisation_check
from hcp_cam.cam.repeatability import (
    group_cam_maps,
    map_agreement,
    pairwise_agreement,
    run_cam_maps,
    top_fraction_mask,
)
from hcp_cam.data.permutation import permute_labels
from hcp_cam.errors import ConfigError, InputError

SHAPE = (12, 14, 10)
AFFINE = np.diag([2.5, 2.5, 2.5, 1.0])


def _blob(centre, seed=0, noise=0.05):
    g = np.indices(SHAPE).astype(float)
    d2 = sum((g[i] - c) ** 2 for i, c in enumerate(centre))
    return np.exp(-d2 / 8.0) + noise * np.random.default_rng(seed).standard_normal(SHAPE)


def test_top_fraction_and_agreement():
    v = np.array([5.0, 1.0, 3.0, 3.0, 0.0, 9.0, 2.0, 8.0, 7.0, 6.0])
    assert np.flatnonzero(top_fraction_mask(v, 0.2)).tolist() == [5, 7]
    assert top_fraction_mask(v, 0.25).sum() == 3  # ceil
    a = _blob((6, 7, 5), seed=0)
    same = map_agreement(a, a)
    assert same["dice_top"] == 1.0 and same["spearman"] == pytest.approx(1.0)
    # another noise draw of the same blob: the top voxels mostly agree
    near = map_agreement(a, _blob((6, 7, 5), seed=1))
    assert near["dice_top"] > 0.6 and near["spearman"] > 0.5
    # a blob elsewhere: little overlap; independent noise: about the top fraction by chance
    far = map_agreement(a, _blob((2, 2, 2), seed=2))
    assert far["dice_top"] < 0.2
    rng = np.random.default_rng(0)
    chance = map_agreement(rng.random((40, 40, 40)), rng.random((40, 40, 40)))
    assert chance["dice_top"] == pytest.approx(0.1, abs=0.02) and abs(chance["spearman"]) < 0.02
    # the domain: where either map is nonzero (a written CAM is 0 where unknown)
    a0 = np.where(np.indices(SHAPE)[0] < 6, a, 0.0)
    assert map_agreement(a0, a0)["n_voxels"] == int((a0 != 0).sum())
    with pytest.raises(InputError, match="different grids"):
        map_agreement(a, a[:-1])
    with pytest.raises(InputError, match="no voxel"):
        map_agreement(np.zeros(SHAPE), np.zeros(SHAPE))


def _write_run(root, name, maps, split_subjects, permuted=None, split="test"):
    run = root / name
    rows = []
    for (subject, acq), data in maps.items():
        (run / "cam" / subject).mkdir(parents=True, exist_ok=True)
        nib.save(
            nib.Nifti1Image(data.astype(np.float32), AFFINE), run / "cam" / subject / f"{acq}_cam.nii.gz"
        )
        rows.append({"split": split, "subject": subject, "acquisition": acq})
    pd.DataFrame(rows).to_csv(run / "cam" / "summary.csv", index=False)
    datalist = {
        "test": [{"subject": s, "label": 1} for s in split_subjects],
        "training": [],
        "validation": [],
    }
    if permuted is not None:
        datalist["label_permutation"] = {"seed": permuted}
    (run / "datalist.json").write_text(json.dumps(datalist))
    return run


def test_pairwise_agreement_of_runs_and_grid_check(tmp_path, caplog):
    keys = [("100", "dwi"), ("101", "dwi")]
    real = {k: _blob((6, 7, 5), seed=i) for i, k in enumerate(keys)}
    other = {k: _blob((6, 7, 5), seed=10 + i) for i, k in enumerate(keys)}
    ra = _write_run(tmp_path, "a", real, ["100", "101"])
    rb = _write_run(tmp_path, "b", other, ["100", "101"])
    table = pairwise_agreement({"a": run_cam_maps(ra), "b": run_cam_maps(rb)})
    assert len(table) == 2 and set(table["subject"]) == {"100", "101"}
    assert (table["dice_top"] > 0.6).all()
    # a map on another grid is not compared (the group step's template maps are the way)
    nib.save(
        nib.Nifti1Image(real[keys[0]].astype(np.float32), AFFINE * 2), rb / "cam" / "100" / "dwi_cam.nii.gz"
    )
    with caplog.at_level("WARNING"):
        table = pairwise_agreement({"a": run_cam_maps(ra), "b": run_cam_maps(rb)})
    assert list(table["subject"]) == ["101"] and "different grids" in caplog.text
    # the group step's layout: <out>/subjects/<subject>[_<acquisition>]_cam.nii.gz
    (tmp_path / "g" / "subjects").mkdir(parents=True)
    for name in ("100_dwi_cam.nii.gz", "101_cam.nii.gz"):
        (tmp_path / "g" / "subjects" / name).write_bytes(b"")
    assert set(group_cam_maps(tmp_path / "g")) == {("100", "dwi"), ("101", "")}


def test_data_randomisation_check_passes_for_unrelated_maps_and_fails_for_copies(tmp_path):
    keys = [("100", "dwi"), ("101", "dwi"), ("102", "dwi")]
    real = {k: _blob((6, 7, 5), seed=i) for i, k in enumerate(keys)}
    run = _write_run(tmp_path, "real", real, ["100", "101", "102"])
    rng = np.random.default_rng(5)
    unrelated = {k: rng.random(SHAPE) for k in keys}
    perm = _write_run(tmp_path, "perm", unrelated, ["100", "101", "102"], permuted=1)
    out = data_randomisation_check(run, perm)
    written = json.loads((run / "cam" / "data_randomisation.json").read_text())
    assert written == json.loads(json.dumps(out))
    assert out["passed"] is True and out["n_acquisitions"] == 3
    assert abs(out["spearman"]["mean"]) < 0.2
    assert out["label_permutation"] == {"seed": 1}
    # maps that do not change with the labels fail
    copies = _write_run(
        tmp_path, "copies", {k: v + 0.01 for k, v in real.items()}, ["100", "101", "102"], permuted=1
    )
    bad = data_randomisation_check(run, copies, out_json=tmp_path / "bad.json")
    assert bad["passed"] is False and bad["spearman"]["min"] > 0.99
    assert data_randomisation_check(run, None) is None
    # another split, or maps missing, are refused with the file named
    other = _write_run(tmp_path, "other", unrelated, ["100", "101", "999"], permuted=1)
    with pytest.raises(InputError, match="same seed, fold"):
        data_randomisation_check(run, other)
    missing = _write_run(
        tmp_path, "missing", {keys[0]: unrelated[keys[0]]}, ["100", "101", "102"], permuted=1
    )
    with pytest.raises(InputError, match="inference of the permuted run"):
        data_randomisation_check(run, missing)


def _datalist():
    entries = {"training": [], "validation": [], "test": []}
    for i in range(20):
        split = "training" if i < 12 else "validation" if i < 16 else "test"
        label = i % 2
        for acq in ("dir95", "dir96"):
            entries[split].append(
                {
                    "subject": f"{100 + i}",
                    "acquisition": acq,
                    "label": label,
                    "group": ["young", "old"][label],
                    "age": 10.0 + 40 * label + i,
                }
            )
    return {**entries, "labels": ["young", "old"]}


def test_permute_labels_shuffles_training_and_validation_subjects_only():
    d = _datalist()
    p = permute_labels(d, seed=3)
    assert p["test"] == d["test"]
    pooled = [e for s in ("training", "validation") for e in p[s]]
    before = [e for s in ("training", "validation") for e in d[s]]
    # a permutation: the same label counts, every acquisition of a subject one label, group follows label
    assert Counter(e["label"] for e in pooled) == Counter(e["label"] for e in before)
    per_subject = {}
    for e in pooled:
        per_subject.setdefault(e["subject"], set()).add((e["label"], e["group"], e["age"]))
        assert e["group"] == ["young", "old"][e["label"]]
    assert all(len(v) == 1 for v in per_subject.values())
    changed = sum(a["label"] != b["label"] for a, b in zip(pooled, before, strict=True))
    assert 0 < changed < len(pooled)
    assert p["label_permutation"]["seed"] == 3
    assert p["label_permutation"]["changed_fraction"] == pytest.approx(changed / len(pooled))
    # seeded; the input is not modified
    assert permute_labels(d, seed=3) == p
    assert permute_labels(d, seed=4) != p
    assert d == _datalist()
    with pytest.raises(ConfigError, match="unknown split"):
        permute_labels(d, 0, splits=("train",))
