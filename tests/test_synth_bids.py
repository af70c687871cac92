"""The synthetic generator's BIDS and QSIPrep-like output: files, geometry, reproducibility, CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hcp_cam.cli import main
from hcp_cam.errors import ConfigError
from hcp_cam.synth import generate_dataset
from hcp_cam.synth.bids import SESSION_OBLIQUE_STEP, generate_bids_dataset
from hcp_cam.synth.phantom import make_affine

TINY = {"shape": (16, 18, 16), "n_per_shell": 6, "shells": (1000.0, 2000.0), "progress": False}


def test_raw_bids_sessions_inherited_gradients_and_ground_truth(tmp_path):
    ds = generate_bids_dataset(tmp_path / "bids", n_subjects=4, n_sessions=2, **TINY)
    root = ds.root
    assert ds.dataset_dir == root and ds.layout == "bids"
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"]
    table = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str)
    assert list(table.columns) == ["participant_id", "age", "sex"]
    assert list(table["participant_id"]) == ds.subjects and all(s.startswith("sub-") for s in ds.subjects)
    hcp = generate_dataset(tmp_path / "hcp", n_subjects=4, **TINY)  # the same subjects and ages
    assert list(table["age"].astype(int)) == list(hcp.participants["age"])
    assert not list(root.glob("sub-*/**/*mask*"))  # raw BIDS has no brain mask
    n = len(np.loadtxt(root / "dwi.bval"))
    for subject in ds.subjects:
        files = sorted((root / subject).rglob("*_dwi.nii.gz"))
        assert [f.relative_to(root).as_posix() for f in files] == [
            f"{subject}/ses-01/dwi/{subject}_ses-01_dwi.nii.gz",
            f"{subject}/ses-02/dwi/{subject}_ses-02_dwi.nii.gz",
        ]
        imgs = [nib.load(f) for f in files]
        assert all(i.shape == (*TINY["shape"], n) and i.get_data_dtype() == np.int16 for i in imgs)
        np.testing.assert_allclose(
            imgs[1].affine, make_affine(TINY["shape"], (2.5, 2.5, 2.5), SESSION_OBLIQUE_STEP)
        )
        assert not np.allclose(imgs[0].affine, imgs[1].affine)
        assert not list((root / subject).rglob("*.bval"))  # inherited from the top level
        gt = root / "derivatives" / "ground_truth"
        for kind in ("fa", "roi", "mask"):
            assert (gt / f"{subject}_{kind}.nii.gz").is_file()
    manifest = json.loads(ds.manifest.read_text())
    assert manifest["parameters"]["n_sessions"] == 2
    assert all((root / f).is_file() for f in manifest["files"])


def test_same_seed_same_bytes_and_gradients_beside_on_request(tmp_path):
    a = generate_bids_dataset(tmp_path / "a", n_subjects=2, **TINY)
    b = generate_bids_dataset(tmp_path / "b", n_subjects=2, **TINY)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*.nii.gz"))
    assert files and all((a.root / f).read_bytes() == (b.root / f).read_bytes() for f in files)
    c = generate_bids_dataset(tmp_path / "c", n_subjects=2, inherit_gradients=False, **TINY)
    assert not (c.root / "dwi.bval").exists()
    for subject in c.subjects:
        assert (c.root / subject / "dwi" / f"{subject}_dwi.bval").read_text() == (
            a.root / "dwi.bval"
        ).read_text()


def test_qsiprep_like_derivatives(tmp_path):
    ds = generate_bids_dataset(tmp_path / "study", n_subjects=2, layout="qsiprep", **TINY)
    q = ds.root / "derivatives" / "qsiprep"
    assert ds.dataset_dir == q and ds.participants_file == ds.root / "participants.tsv"
    assert json.loads((q / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    for subject in ds.subjects:
        stem = q / subject / "dwi" / f"{subject}_space-ACPC"
        dwi, mask = nib.load(f"{stem}_desc-preproc_dwi.nii.gz"), nib.load(f"{stem}_desc-brain_mask.nii.gz")
        assert dwi.get_data_dtype() == np.float32 and mask.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(dwi.affine, mask.affine)
        true = nib.load(ds.true_mask[subject]).get_fdata()
        np.testing.assert_array_equal(np.asarray(mask.dataobj), true)
        assert len(np.loadtxt(f"{stem}_desc-preproc_dwi.bval")) == dwi.shape[3]
    assert not list(ds.root.glob("sub-*"))  # the raw dataset holds no DWI


def test_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="layout must be one of"):
        generate_bids_dataset(tmp_path / "x", layout="minimal")
    with pytest.raises(ConfigError, match="n_sessions must be >= 1"):
        generate_bids_dataset(tmp_path / "x", n_sessions=0)
    assert not (tmp_path / "x").exists()


def test_cli_writes_bids_and_says_which_folder_to_use(tmp_path, capsys):
    args = ["--subjects", "2", "--shape", "16", "18", "16", "--directions", "6", "--no-progress"]
    assert main(["synth", str(tmp_path / "b"), "--layout", "bids", "--sessions", "2", *args]) == 0
    assert len(list((tmp_path / "b").rglob("*_dwi.nii.gz"))) == 4
    assert main(["synth", str(tmp_path / "q"), "--layout", "qsiprep", *args]) == 0
    out = capsys.readouterr().out
    assert f"the dataset to use is {tmp_path / 'q' / 'derivatives' / 'qsiprep'}" in out
