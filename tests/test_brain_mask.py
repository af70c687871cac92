"""Brain masks from the mean b0 (DIPY median_otsu) against the generator's true mask, on each
session's own grid, with the record of how they were made; and the bad inputs that stop it."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from bids_trees import write_bval, write_dwi

from hcp_cam.data.brain_mask import MASK_PARAMS, compute_brain_mask, mask_sidecar_path
from hcp_cam.errors import InputError
from hcp_cam.synth.bids import generate_bids_dataset


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


@pytest.mark.parametrize("shape", [(24, 28, 24), (40, 48, 40)])
def test_median_otsu_mask_matches_the_true_mask(tmp_path, shape):
    """Raw, scanner-like int16 DWIs (noise in the background, no mask): Dice >= 0.9 per session."""
    ds = generate_bids_dataset(
        tmp_path / "bids", n_subjects=2, n_sessions=2, shape=shape, n_per_shell=6, progress=False
    )
    scores = []
    for subject, acqs in ds.acquisitions.items():
        true = np.asarray(nib.load(ds.true_mask[subject]).dataobj) > 0
        for k, acq in enumerate(acqs):
            out = compute_brain_mask(acq.dwi, acq.bvals, tmp_path / "masks" / subject / f"{k}_mask.nii.gz")
            img, dwi = nib.load(out), nib.load(acq.dwi)
            mask = np.asarray(img.dataobj) > 0
            scores.append(dice(mask, true))
            assert img.shape == dwi.shape[:3] and img.get_data_dtype() == np.uint8
            np.testing.assert_array_equal(img.affine, dwi.affine)  # each session's own, tilted grid
            assert int(img.header["sform_code"]) == int(dwi.header["sform_code"]) == 1
            record = json.loads(mask_sidecar_path(out).read_text())
            assert record["median_radius"] == MASK_PARAMS["median_radius"] == 2
            assert record["numpass"] == MASK_PARAMS["numpass"] == 2
            b0 = np.flatnonzero(np.loadtxt(acq.bvals) < 50).tolist()
            assert len(b0) == 3 and record["b0_volumes"] == b0 and record["brain_voxels"] == int(mask.sum())
    assert min(scores) >= 0.9, scores
    assert not np.allclose(*(nib.load(a.dwi).affine for a in ds.acquisitions[ds.subjects[0]]))


def test_bad_inputs_stop_it_and_write_nothing(tmp_path):
    dwi = write_dwi(tmp_path / "dwi.nii.gz")
    out = tmp_path / "out" / "m_mask.nii.gz"
    with pytest.raises(InputError, match=r"bval: 8 b-values but the DWI dwi.nii.gz has 7 volumes"):
        compute_brain_mask(dwi, write_bval(tmp_path / "a.bval", 8), out)
    (tmp_path / "b.bval").write_text("1000 " * 7)
    with pytest.raises(InputError, match="no b0 volume"):
        compute_brain_mask(dwi, tmp_path / "b.bval", out)
    three_d = tmp_path / "fa.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(three_d))
    with pytest.raises(InputError, match=r"a DWI must be 4D \(X, Y, Z, N\), found shape \(4, 4, 4\)"):
        compute_brain_mask(three_d, tmp_path / "a.bval", out)
    assert not out.parent.exists() or not any(out.parent.iterdir())
