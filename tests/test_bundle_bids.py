"""Other labs' data through the bundle's own commands: a raw BIDS tree (two sessions on their own
grids, bval/bvec inherited from the top level, no brain masks) and a QSIPrep tree (participants
table given separately), each trained, evaluated and inferred for one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from bundle_helpers import (
    EVALUATE,
    INFERENCE,
    TINY_SHAPE,
    TRAIN,
    TinyData,
    output_of,
    run_bundle,
    tree_snapshot,
)

from hcp_cam.synth.bids import generate_bids_dataset

SPLITS = ("training", "validation", "test")
N_SUBJECTS = 6  # 3 young, 3 old: one of each group in every split
ONE_EPOCH = {"epochs": 1}


def _run_all(data: TinyData, out: Path, overrides: dict) -> dict:
    procs = {}
    for run_id, config in (("training", TRAIN), ("evaluating", EVALUATE), ("inference", INFERENCE)):
        procs[run_id] = proc = run_bundle(run_id, config, out, data, {**ONE_EPOCH, **overrides})
        assert proc.returncode == 0, f"{run_id}:\n{output_of(proc)[-4000:]}"
    return procs


def _check_split_and_cams(out: Path, dataset_dir: Path, acquisitions_per_subject: int) -> dict:
    datalist = json.loads((out / "datalist.json").read_text())
    splits = {s: {e["subject"] for e in datalist[s]} for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            assert a == b or not splits[a] & splits[b], (a, b, splits)  # no subject in two splits
    assert sum(len(v) for v in splits.values()) == N_SUBJECTS
    for s in SPLITS:
        for subject in splits[s]:
            assert sum(e["subject"] == subject for e in datalist[s]) == acquisitions_per_subject
    summary = pd.read_csv(out / "cam" / "summary.csv", dtype=str)
    assert {(r.subject, r.acquisition) for r in summary.itertuples()} == {
        (e["subject"], e["acquisition"]) for e in datalist["test"]
    }
    for e in datalist["test"]:
        dwi = nib.load(dataset_dir / e["dwi"])
        for suffix in ("_cam.nii.gz", "_cam01.nii.gz"):
            cam = nib.load(out / "cam" / e["subject"] / f"{e['acquisition']}{suffix}")
            assert cam.shape == dwi.shape[:3]
            np.testing.assert_allclose(cam.affine, dwi.affine, atol=1e-6)  # the acquisition's own grid
            assert int(cam.header["sform_code"]) == int(dwi.header["sform_code"])
    metrics = json.loads((out / "metrics" / "test_metrics.json").read_text())
    assert metrics["n_subjects"] == len(splits["test"]) == 2
    return datalist


def test_raw_bids_with_sessions_and_inherited_gradients(tmp_path):
    ds = generate_bids_dataset(
        tmp_path / "bids", n_subjects=N_SUBJECTS, n_sessions=2, shape=TINY_SHAPE, progress=False
    )
    assert (ds.root / "dwi.bval").is_file() and not list(ds.root.glob("sub-*/**/*.bval"))
    before = tree_snapshot(ds.root)
    data = TinyData(ds.root, tmp_path / "cache")
    out = tmp_path / "run"
    procs = _run_all(data, out, {})
    assert "computed one with DIPY median_otsu (median_radius=2, numpass=2" in output_of(procs["training"])
    datalist = _check_split_and_cams(out, ds.root, acquisitions_per_subject=2)
    assert datalist["layout"] == "bids"
    test = datalist["test"][0]
    assert (
        test["bvals"] == "dwi.bval" and test["compute_mask"] and test["entities"]["session"] in ("01", "02")
    )
    affines = [
        nib.load(out / "cam" / test["subject"] / f"ses-{k}_dwi_cam.nii.gz").affine for k in ("01", "02")
    ]
    assert not np.allclose(*affines)  # each session's CAM on that session's grid
    masks = sorted((data.cache_dir / "fa").rglob("*_mask.nii.gz"))
    assert len(masks) == 2 * N_SUBJECTS and all(
        m.with_suffix("").with_suffix(".json").is_file() for m in masks
    )
    assert list((data.cache_dir / "bids-index").rglob("layout_index.sqlite"))
    assert tree_snapshot(ds.root) == before  # the dataset is only read


def test_qsiprep_derivatives_with_the_table_given_separately(tmp_path):
    ds = generate_bids_dataset(
        tmp_path / "study", n_subjects=N_SUBJECTS, layout="qsiprep", shape=TINY_SHAPE, progress=False
    )
    table = tmp_path / "elsewhere" / "ages.tsv"
    table.parent.mkdir()
    table.write_bytes(ds.participants_file.read_bytes())
    ds.participants_file.unlink()  # only the given table can be used
    data = TinyData(ds.dataset_dir, tmp_path / "cache")
    out = tmp_path / "run"
    overrides = {"participants_file": str(table), "dataset_layout": "qsiprep"}
    procs = _run_all(data, out, overrides)
    assert "median_otsu" not in output_of(procs["training"])  # QSIPrep's own masks are used
    datalist = _check_split_and_cams(out, ds.dataset_dir, acquisitions_per_subject=1)
    assert datalist["layout"] == "qsiprep" and Path(datalist["participants"]) == table.resolve()
    assert all(e["mask"].endswith("_space-ACPC_desc-brain_mask.nii.gz") for e in datalist["training"])
    assert not list((data.cache_dir / "fa").rglob("*_mask.nii.gz"))
    localization = pd.read_csv(out / "cam" / "localization.csv", dtype=str)  # ground truth found beside
    assert len(localization) == len(datalist["test"])


def test_a_forced_layout_that_does_not_fit_is_refused_before_anything_is_written(tmp_path):
    ds = generate_bids_dataset(tmp_path / "study", n_subjects=2, layout="qsiprep", shape=(16, 18, 16), n_per_shell=6, progress=False)  # fmt: skip
    out = tmp_path / "run"
    proc = run_bundle(
        "training", TRAIN, out, TinyData(ds.dataset_dir, tmp_path / "cache"), {"dataset_layout": "bids"}
    )
    assert proc.returncode != 0
    text = output_of(proc)
    assert "raw BIDS was asked for, but this looks like QSIPrep derivatives" in text, text[-3000:]
    assert "Traceback" not in text
    assert not (out / "checkpoints").exists() and not (out / "datalist.json").exists()
