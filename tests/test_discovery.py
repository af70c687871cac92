"""Discovery of the two HCP layouts on real (tiny) NIfTI and gradient files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hcp_cam.data import LAYOUTS, Acquisition, discover_acquisitions
from hcp_cam.errors import InputError

N_VOLUMES = 7


def write_dwi(path: Path, n: int = N_VOLUMES) -> Path:
    """A real 4x4x4xN NIfTI with a rigid 1.25 mm affine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).uniform(100, 1000, size=(4, 4, 4, n)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.25, 1.25, 1.25, 1.0])), str(path))
    return path


def write_gradients(bvals: Path, bvecs: Path, n: int = N_VOLUMES) -> None:
    """FSL-style text files: one line of N b-values, three lines of N direction components."""
    b = np.r_[0, np.full(n - 1, 1000)]
    v = np.random.default_rng(1).normal(size=(3, n))
    v /= np.linalg.norm(v, axis=0)
    v[:, 0] = 0
    bvals.write_text(" ".join(f"{x:g}" for x in b) + "\n")
    bvecs.write_text("\n".join(" ".join(f"{x:.6f}" for x in row) for row in v) + "\n")


def make_preprocessed(root: Path, subject: str, mask: bool = True) -> None:
    folder = root / subject / "T1w" / "Diffusion"
    write_dwi(folder / "data.nii.gz")
    write_gradients(folder / "bvals", folder / "bvecs")
    if mask:
        nib.save(
            nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), str(folder / "nodif_brain_mask.nii.gz")
        )


def make_unprocessed(root: Path, subject: str, runs=("dir95_RL", "dir95_LR"), gdc: bool = True) -> None:
    folder = root / subject / "unprocessed" / "3T" / "Diffusion"
    for run in runs:
        stem = f"{subject}_3T_DWI_{run}"
        write_dwi(folder / f"{stem}.nii.gz")
        if gdc:
            write_dwi(folder / f"{stem}_gdc.nii.gz")
        write_gradients(folder / f"{stem}.bval", folder / f"{stem}.bvec")


def test_preprocessed_layout(tmp_path):
    make_preprocessed(tmp_path, "100307")
    make_preprocessed(tmp_path, "010101", mask=False)
    acqs = discover_acquisitions(tmp_path)
    assert [(a.subject, a.acquisition) for a in acqs] == [("010101", "dwi"), ("100307", "dwi")]
    first, second = acqs
    assert first.mask is None
    assert second.mask == tmp_path / "100307" / "T1w" / "Diffusion" / "nodif_brain_mask.nii.gz"
    assert second.dwi.name == "data.nii.gz" and second.bvals.name == "bvals" and second.bvecs.name == "bvecs"
    assert all(p.is_file() for a in acqs for p in (a.dwi, a.bvals, a.bvecs))


def test_unprocessed_layout_runs_and_gdc_share_gradients(tmp_path):
    make_unprocessed(tmp_path, "211316", runs=("dir95_RL", "dir95_LR", "dir97_RL"))
    acqs = discover_acquisitions(tmp_path)
    names = [a.acquisition for a in acqs]
    assert names == sorted(names)
    assert set(names) == {f"{r}{g}" for r in ("dir95_RL", "dir95_LR", "dir97_RL") for g in ("", "_gdc")}
    by_name = {a.acquisition: a for a in acqs}
    gdc, plain = by_name["dir95_LR_gdc"], by_name["dir95_LR"]
    assert gdc.dwi.name == "211316_3T_DWI_dir95_LR_gdc.nii.gz"
    assert gdc.bvals == plain.bvals and gdc.bvals.name == "211316_3T_DWI_dir95_LR.bval"
    assert gdc.bvecs == plain.bvecs and gdc.bvecs.name == "211316_3T_DWI_dir95_LR.bvec"
    assert all(a.mask is None and a.subject == "211316" for a in acqs)


def test_mixed_layouts_sorted_and_other_folders_ignored(tmp_path):
    make_unprocessed(tmp_path, "300", runs=("dir95_RL",), gdc=False)
    make_preprocessed(tmp_path, "200")
    make_preprocessed(tmp_path, "300")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "outputs").mkdir()
    (tmp_path / "participants.csv").write_text("subject,age\n")
    acqs = discover_acquisitions(tmp_path)
    assert [(a.subject, a.acquisition) for a in acqs] == [("200", "dwi"), ("300", "dir95_RL"), ("300", "dwi")]


def test_acquisition_is_frozen(tmp_path):
    make_preprocessed(tmp_path, "1")
    acq = discover_acquisitions(tmp_path)[0]
    assert isinstance(acq, Acquisition)
    with pytest.raises(dataclasses.FrozenInstanceError):
        acq.subject = "2"


@pytest.mark.parametrize("missing", ["bvals", "bvecs"])
def test_preprocessed_missing_gradient_file_is_named(tmp_path, missing):
    make_preprocessed(tmp_path, "100307")
    gone = tmp_path / "100307" / "T1w" / "Diffusion" / missing
    gone.unlink()
    with pytest.raises(InputError, match="missing gradient file") as err:
        discover_acquisitions(tmp_path)
    assert err.value.path == str(gone)


def test_unprocessed_gdc_without_plain_bvec_names_the_expected_file(tmp_path):
    make_unprocessed(tmp_path, "5", runs=("dir95_RL",))
    gone = tmp_path / "5" / "unprocessed" / "3T" / "Diffusion" / "5_3T_DWI_dir95_RL.bvec"
    gone.unlink()
    with pytest.raises(InputError, match=r"5_3T_DWI_dir95_RL\.bvec"):
        discover_acquisitions(tmp_path)


def test_empty_root_lists_layouts(tmp_path):
    (tmp_path / "100307" / "T1w").mkdir(parents=True)
    with pytest.raises(InputError, match="no diffusion acquisitions found") as err:
        discover_acquisitions(tmp_path)
    for layout in LAYOUTS:
        assert layout in str(err.value)


def test_missing_root(tmp_path):
    with pytest.raises(InputError, match="not found"):
        discover_acquisitions(tmp_path / "nope")
