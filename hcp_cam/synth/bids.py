"""Write the synthetic subjects as raw BIDS or as QSIPrep-like derivatives, with their ground truth.

Layouts (``OUT`` is the folder written)::

    bids:     OUT/dataset_description.json, README, participants.tsv (participant_id, age, sex)
              OUT/dwi.bval, dwi.bvec, dwi.json             inherited by every DWI (or beside each)
              OUT/sub-<id>[/ses-<k>]/dwi/sub-<id>[_ses-<k>]_dwi.nii.gz    int16, no brain mask
    qsiprep:  OUT/dataset_description.json, participants.tsv (the raw dataset's table)
              OUT/derivatives/qsiprep/dataset_description.json   (DatasetType derivative)
              OUT/derivatives/qsiprep/sub-<id>[/ses-<k>]/dwi/
                  sub-<id>[_ses-<k>]_space-ACPC_desc-preproc_dwi.{nii.gz,bval,bvec}   float32
                  sub-<id>[_ses-<k>]_space-ACPC_desc-brain_mask.nii.gz
    both:     OUT/derivatives/ground_truth/sub-<id>_{fa,roi,mask}.nii.gz, synth.json, README.txt

Sessions are the same brain imaged again: new noise, and a grid tilted by
:data:`SESSION_OBLIQUE_STEP` degrees more per session (its own affine, the same voxel grid), so
outputs can be checked against each acquisition's own geometry. The ground-truth maps are on that
voxel grid, with session 1's affine. Every file goes through :func:`hcp_cam.io.atomic_path`;
``synth.json`` is written last.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hcp_cam import __version__
from hcp_cam.errors import ConfigError
from hcp_cam.io import atomic_path, save_nifti_like, write_json_atomic
from hcp_cam.synth.dataset import (
    MANIFEST,
    SynthAcquisition,
    SynthDataset,
    _check_target,
    _remove_stale,
    draw_participants,
)
from hcp_cam.synth.nifti_out import reference_image, write_dwi_nifti
from hcp_cam.synth.phantom import DEFAULT_ROI_CENTER, DEFAULT_ROI_RADIUS, make_affine
from hcp_cam.synth.signal import make_gradient_scheme
from hcp_cam.synth.subject import DEFAULT_SHAPE, DEFAULT_VOXEL_SIZE, check_subject_params, make_subject

__all__ = ["BIDS_LAYOUTS", "SESSION_OBLIQUE_STEP", "SynthBIDSDataset", "generate_bids_dataset"]

BIDS_LAYOUTS = ("bids", "qsiprep")
SESSION_OBLIQUE_STEP = 5.0  # degrees of extra tilt per later session
QSIPREP_DIR = Path("derivatives") / "qsiprep"
_BIDS_VERSION = "1.9.0"


@dataclass
class SynthBIDSDataset(SynthDataset):
    """What :func:`generate_bids_dataset` wrote (:class:`~hcp_cam.synth.SynthDataset` plus two paths).

    Attributes:
        dataset_dir: the folder to give as the dataset: ``OUT`` (bids) or ``OUT/derivatives/qsiprep``.
        participants_file: ``OUT/participants.tsv``.
        true_mask: subject -> the true brain mask (uint8), on the DWI voxel grid.
    """

    dataset_dir: Path | None = None
    participants_file: Path | None = None
    true_mask: dict[str, Path] = dataclasses.field(default_factory=dict)


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def generate_bids_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int = 16,
    seed: int = 0,
    layout: str = "bids",
    n_sessions: int = 1,
    shape: Sequence[int] = DEFAULT_SHAPE,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    snr: float | None = 30.0,
    effect_size: float = 0.5,
    n_b0: int = 3,
    n_per_shell: int = 10,
    shells: Sequence[float] = (1000.0, 2000.0, 3000.0),
    oblique_deg: float = 0.0,
    jitter: float = 1.0,
    inherit_gradients: bool = True,
    roi_center: Sequence[float] = DEFAULT_ROI_CENTER,
    roi_radius: float = DEFAULT_ROI_RADIUS,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthBIDSDataset:
    """Write ``n_subjects`` synthetic subjects in BIDS (``layout="bids"``) or QSIPrep-like form.

    The subjects (ids, ages, anatomy, noise streams) are those of
    :func:`hcp_cam.synth.generate_dataset` with the same seed, named ``sub-<id>``.

    Args:
        out_dir: the BIDS root; created if missing (same rules as ``generate_dataset``).
        n_subjects: number of subjects, half young, half old.
        seed: everything is reproducible from it.
        layout: ``"bids"`` (raw, scanner-like int16 with noise in the background, no mask) or
            ``"qsiprep"`` (float32 preprocessed DWIs in ``derivatives/qsiprep`` with brain masks).
        n_sessions: sessions per subject (``ses-01``...; 1 writes no session level).
        shape, voxel_size, snr, effect_size, n_b0, n_per_shell, shells, oblique_deg, jitter,
            roi_center, roi_radius: as in ``generate_dataset``.
        inherit_gradients: raw BIDS: one top-level ``dwi.bval``/``dwi.bvec`` that every DWI inherits;
            ``False`` writes them beside each DWI. (QSIPrep writes them beside each DWI.)
        overwrite: write into a non-empty folder that is not a synth output.
        progress: show a tqdm bar over subjects.

    Raises:
        ConfigError: an unknown layout, ``n_sessions < 1`` or a parameter out of range.
        InputError: ``out_dir`` is a file, or a non-empty folder that is no synth output.
    """
    if layout not in BIDS_LAYOUTS:
        raise ConfigError(f"layout must be one of {BIDS_LAYOUTS}, got {layout!r}")
    if n_sessions < 1:
        raise ConfigError(f"n_sessions must be >= 1, got {n_sessions}")
    check_subject_params(shape, voxel_size, effect_size, snr)
    participants = draw_participants(n_subjects, seed)
    scheme = make_gradient_scheme(n_b0, n_per_shell, shells, seed=seed)
    out = Path(out_dir)
    previous = _check_target(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    gt_dir = out / "derivatives" / "ground_truth"
    data_root = out / QSIPREP_DIR if layout == "qsiprep" else out
    sexes = np.random.default_rng([seed, 606]).choice(["F", "M"], size=n_subjects)
    ds = SynthBIDSDataset(
        root=out,
        layout=layout,
        participants=participants.assign(subject="sub-" + participants["subject"]),
        dataset_dir=data_root,
        participants_file=out / "participants.tsv",
    )
    written: list[Path] = []
    sessions = [f"ses-{k + 1:02d}" for k in range(n_sessions)] if n_sessions > 1 else [None]
    rows = participants.itertuples(index=False)
    for row in tqdm(rows, total=n_subjects, desc="synth", unit="subject", disable=not progress):
        sid = f"sub-{row.subject}"
        subj = make_subject(
            row.subject, row.group, shape, voxel_size, seed=[seed, int(row.subject)], effect_size=effect_size,
            snr=snr, scheme=scheme, oblique_deg=oblique_deg, jitter=jitter, roi_center=roi_center,
            roi_radius=roi_radius,
        )  # fmt: skip
        acqs = []
        for k, ses in enumerate(sessions):
            tilted = make_affine(shape, voxel_size, oblique_deg + SESSION_OBLIQUE_STEP * k)
            folder = data_root / sid / (ses or "") / "dwi"
            stem = "_".join(p for p in (sid, ses) if p)
            if layout == "qsiprep":
                stem += "_space-ACPC"
                dwi = folder / f"{stem}_desc-preproc_dwi.nii.gz"
                bvals, bvecs = (
                    dwi.with_name(f"{stem}_desc-preproc_dwi.bval"),
                    dwi.with_name(f"{stem}_desc-preproc_dwi.bvec"),
                )
                mask = folder / f"{stem}_desc-brain_mask.nii.gz"
                dtype, what = np.float32, "hcp-cam synth QSIPrep-like DWI"
            else:
                dwi = folder / f"{stem}_dwi.nii.gz"
                if inherit_gradients:
                    bvals, bvecs = out / "dwi.bval", out / "dwi.bvec"
                else:
                    bvals, bvecs = dwi.with_name(f"{stem}_dwi.bval"), dwi.with_name(f"{stem}_dwi.bvec")
                mask, dtype, what = None, np.int16, "hcp-cam synth raw DWI"
            volumes = subj.volumes(run=k, scheme=scheme)
            write_dwi_nifti(dwi, volumes, shape, scheme.n, tilted, dtype, what)
            if bvals not in written:  # FSL bvecs depend on det(affine) only: the same for every session
                scheme.write_fsl(bvals, bvecs, tilted)
            if mask is not None:
                save_nifti_like(subj.mask, reference_image(shape, tilted), mask, "brain mask", np.uint8)
            acqs.append(SynthAcquisition(dwi, bvals, bvecs, mask))
            written += [dwi] + [p for p in (bvals, bvecs) if p not in written] + ([mask] if mask else [])
        ds.acquisitions[sid] = acqs
        ref = reference_image(shape, subj.affine)
        ds.true_fa[sid] = save_nifti_like(subj.fa, ref, gt_dir / f"{sid}_fa.nii.gz", "true noise-free FA")
        ds.roi[sid] = save_nifti_like(
            subj.roi, ref, gt_dir / f"{sid}_roi.nii.gz", "age-effect region", np.uint8
        )
        ds.true_mask[sid] = save_nifti_like(
            subj.mask, ref, gt_dir / f"{sid}_mask.nii.gz", "true brain mask", np.uint8
        )
        written += [ds.true_fa[sid], ds.roi[sid], ds.true_mask[sid]]
    table = ds.participants.rename(columns={"subject": "participant_id"})[["participant_id", "age"]]
    with atomic_path(out / "participants.tsv") as tmp:
        table.assign(sex=sexes).to_csv(tmp, sep="\t", index=False)
    generated_by = [{"Name": "hcp-cam synth", "Version": __version__}]
    description = {"Name": "hcp-cam synthetic diffusion dataset", "BIDSVersion": _BIDS_VERSION}
    written.append(write_json_atomic({**description, "DatasetType": "raw", "GeneratedBy": generated_by},
                                     out / "dataset_description.json"))  # fmt: skip
    if layout == "qsiprep":
        written.append(write_json_atomic(
            {**description, "Name": "QSIPrep-like derivatives (synthetic)", "DatasetType": "derivative",
             "GeneratedBy": [{**generated_by[0], "Description": "QSIPrep-like outputs, not QSIPrep"}]},
            data_root / "dataset_description.json",
        ))  # fmt: skip
    else:
        sidecar = {"PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.05, "RepetitionTime": 5.52}
        written.append(write_json_atomic(sidecar, out / "dwi.json"))
    readme = "Synthetic diffusion data written by `hcp-cam synth` (hcp_cam.synth); ground truth in derivatives/ground_truth.\n"
    written += [_write_text(out / "README", readme), out / "participants.tsv"]
    params = {
        "n_subjects": n_subjects, "seed": seed, "layout": layout, "n_sessions": n_sessions, "shape": list(shape),
        "voxel_size": list(voxel_size), "snr": snr, "effect_size": effect_size, "n_b0": n_b0,
        "n_per_shell": n_per_shell, "shells": list(shells), "oblique_deg": oblique_deg,
        "session_oblique_step": SESSION_OBLIQUE_STEP, "jitter": jitter, "inherit_gradients": inherit_gradients,
        "roi_center": list(roi_center), "roi_radius": roi_radius,
    }  # fmt: skip
    written.append(_write_text(gt_dir / "README.txt", "Ground truth: <subject>_{fa,roi,mask}.nii.gz.\n"
                                + "".join(f"  {k} = {v}\n" for k, v in params.items())))  # fmt: skip
    names = {str(p.relative_to(out)) for p in written}
    _remove_stale(out, previous, names)
    manifest = {
        "generator": "hcp_cam.synth.generate_bids_dataset",
        "parameters": params,
        "subjects": [
            {"subject": f"sub-{r.subject}", "age": int(r.age), "group": r.group}
            for r in participants.itertuples(index=False)
        ],
        "files": sorted(names | {str(MANIFEST)}),
    }
    ds.manifest = write_json_atomic(manifest, out / MANIFEST)
    return ds
