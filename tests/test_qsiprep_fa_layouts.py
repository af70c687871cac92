"""QSIPrep derivatives (spaces, masks, the participants table found or given) and given FA maps
(QSIRecon names or a table): acquisitions, datalist entries, and FA used without a fit."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids_trees import bids_root, write_dwi, write_gradients, write_table

from hcp_cam.data import SPLITS, make_datalist
from hcp_cam.data.fa_sources import acquisition_maps
from hcp_cam.data.layouts import find_acquisitions
from hcp_cam.data.qsiprep import find_qsiprep_acquisitions
from hcp_cam.errors import InputError
from hcp_cam.synth.bids import generate_bids_dataset

AGES = {"sub-01": "10", "sub-02": "12", "sub-03": "14", "sub-04": "30", "sub-05": "40", "sub-06": "50"}
TINY = {"shape": (16, 18, 16), "n_per_shell": 6, "shells": (1000.0,), "progress": False}


def _preproc(root: Path, subject: str, space: str = "ACPC", session: str | None = None, mask: bool = True):
    folder = root / subject / (f"ses-{session}" if session else "") / "dwi"
    stem = "_".join(p for p in (subject, f"ses-{session}" if session else None) if p) + f"_space-{space}"
    dwi = write_dwi(folder / f"{stem}_desc-preproc_dwi.nii.gz")
    write_gradients(folder / f"{stem}_desc-preproc_dwi")
    if mask:
        nib.save(
            nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)),
            str(folder / f"{stem}_desc-brain_mask.nii.gz"),
        )
    return dwi


def test_qsiprep_spaces_masks_and_the_acpc_preference(tmp_path):
    root = bids_root(tmp_path / "qsiprep", derivative=True)
    _preproc(root, "sub-01", "ACPC", session="1")
    _preproc(root, "sub-01", "T1w", session="1")  # the same acquisition in the older space: ACPC wins
    _preproc(root, "sub-02", "T1w")  # an older QSIPrep: T1w only
    _preproc(root, "sub-03", "MNI152NLin2009cAsym")  # another space: not used
    _preproc(root, "sub-04", "ACPC", mask=False)  # mask missing: computed later
    acqs = {(a.subject, a.acquisition): a for a in find_qsiprep_acquisitions(root)}
    assert list(acqs) == [
        ("sub-01", "ses-1_space-ACPC_desc-preproc_dwi"),
        ("sub-02", "space-T1w_desc-preproc_dwi"),
        ("sub-04", "space-ACPC_desc-preproc_dwi"),
    ]
    one = acqs[("sub-01", "ses-1_space-ACPC_desc-preproc_dwi")]
    assert one.mask == root / "sub-01/ses-1/dwi/sub-01_ses-1_space-ACPC_desc-brain_mask.nii.gz"
    assert one.bvals == root / "sub-01/ses-1/dwi/sub-01_ses-1_space-ACPC_desc-preproc_dwi.bval"
    assert not one.compute_mask
    assert acqs[("sub-04", "space-ACPC_desc-preproc_dwi")].compute_mask
    assert acqs[("sub-04", "space-ACPC_desc-preproc_dwi")].mask is None


def test_qsiprep_without_the_used_spaces_says_what_it_found(tmp_path):
    root = bids_root(tmp_path / "qsiprep", derivative=True)
    _preproc(root, "sub-01", "MNI152NLin2009cAsym")
    with pytest.raises(InputError, match=r"no QSIPrep DWI \(found only space MNI152NLin2009cAsym\)"):
        find_qsiprep_acquisitions(root)


def test_qsiprep_participants_from_the_raw_dataset_or_given(tmp_path):
    ds = generate_bids_dataset(tmp_path / "study", n_subjects=6, layout="qsiprep", **TINY)
    dl = make_datalist(ds.dataset_dir)  # found at <study>/participants.tsv, two folders up
    assert dl["layout"] == "qsiprep"
    entries = [e for s in SPLITS for e in dl[s]]
    assert len(entries) == 6 and all(e["mask"].endswith("_desc-brain_mask.nii.gz") for e in entries)
    assert all("compute_mask" not in e for e in entries)
    assert Path(dl["participants"]) == ds.participants_file.resolve()
    given = tmp_path / "ages.csv"  # a table of another lab: bare labels, commas
    rows = ds.participants.assign(subject=ds.participants["subject"].str.removeprefix("sub-"))
    rows[["subject", "age"]].to_csv(given, index=False)
    again = make_datalist(ds.dataset_dir, participants=given)
    assert {e["subject"] for s in SPLITS for e in again[s]} == set(ds.subjects)
    (ds.root / "participants.tsv").unlink()
    with pytest.raises(InputError, match="give the table with --participants FILE"):
        make_datalist(ds.dataset_dir)


def _fa_map(path: Path, value: float = 0.4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((6, 7, 6), np.float32)
    data[1:5, 1:6, 1:5] = value
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return path


def test_qsirecon_fa_maps_are_used_as_given(tmp_path):
    root = bids_root(
        tmp_path / "qsirecon", derivative=True, participants=[["participant_id", "age"], *AGES.items()]
    )
    for i, s in enumerate(AGES):
        _fa_map(root / s / "dwi" / f"{s}_space-ACPC_model-tensor_param-fa_dwimap.nii.gz", 0.3 + 0.01 * i)
        _fa_map(root / s / "dwi" / f"{s}_space-ACPC_model-tensor_param-md_dwimap.nii.gz")  # not FA
    layout, acqs = find_acquisitions(root)
    assert layout == "fa" and len(acqs) == 6
    assert all(a.dwi is None and a.fa.name.endswith("_param-fa_dwimap.nii.gz") for a in acqs)
    dl = make_datalist(root)
    e = next(e for s in SPLITS for e in dl[s] if e["subject"] == "sub-02")
    assert e["fa"] == "sub-02/dwi/sub-02_space-ACPC_model-tensor_param-fa_dwimap.nii.gz" and "dwi" not in e
    fa, mask, how = acquisition_maps(acqs[1], tmp_path / "cache")
    assert (fa, mask, how) == (acqs[1].fa, None, "given") and not (tmp_path / "cache").exists()


def test_fa_table_maps_files_to_subjects(tmp_path):
    root = tmp_path / "fa"
    rows = [["subject", "fa", "acquisition", "mask"]]
    for s in AGES:
        rows.append([s, f"maps/{s}_a.nii.gz", "a", ""])
        rows.append([s, f"maps/{s}_b.nii.gz", "b", f"maps/{s}_mask.nii.gz"])
        _fa_map(root / "maps" / f"{s}_a.nii.gz")
        _fa_map(root / "maps" / f"{s}_b.nii.gz")
        _fa_map(root / "maps" / f"{s}_mask.nii.gz", 1.0)
    write_table(root / "fa_maps.csv", rows, sep=",")
    write_table(root / "participants.csv", [["subject", "age"], *AGES.items()], sep=",")
    dl = make_datalist(root)
    assert dl["layout"] == "fa"
    by = {(e["subject"], e["acquisition"]): e for s in SPLITS for e in dl[s]}
    assert by[("sub-03", "a")] == {**by[("sub-03", "a")], "fa": "maps/sub-03_a.nii.gz"}
    assert "mask" not in by[("sub-03", "a")] and by[("sub-03", "b")]["mask"] == "maps/sub-03_mask.nii.gz"
    splits = {s: {e["subject"] for e in dl[s]} for s in SPLITS}
    assert not (splits["training"] & splits["test"]) and not (splits["training"] & splits["validation"])


@pytest.mark.parametrize(
    "rows, message",
    [
        ([["subject", "file"], ["sub-01", "x.nii.gz"]], "needs columns 'subject' and 'fa'"),
        ([["subject", "fa"], ["sub-01", "missing.nii.gz"]], "FA map not found"),
        ([["subject", "fa"], ["sub-01", "a.nii.gz"], ["sub-01", "a.nii.gz"]], "has two FA maps named 'a'"),
        (
            [["subject", "fa"], ["sub-01", "4d.nii.gz"]],
            "an FA map must be 3D (X, Y, Z), found shape (4, 4, 4, 7)",
        ),
    ],
)
def test_bad_fa_tables(tmp_path, rows, message):
    root = tmp_path / "fa"
    _fa_map(root / "a.nii.gz")
    write_dwi(root / "4d.nii.gz")
    write_table(root / "fa_maps.tsv", rows)
    with pytest.raises(InputError) as err:
        find_acquisitions(root, "fa")
    assert message in str(err.value)
