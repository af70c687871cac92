"""Write a synthetic HCP-like dataset: subject folders, participants table and ground truth.

Layouts (``OUT`` is the dataset root)::

    minimal:     OUT/<subject>/T1w/Diffusion/{data.nii.gz, bvals, bvecs, nodif_brain_mask.nii.gz}
    unprocessed: OUT/<subject>/unprocessed/3T/Diffusion/<subject>_3T_DWI_dir<NN>_{RL,LR}.{nii.gz,bval,bvec}
    both:        OUT/participants.csv                      subject,age,group
                 OUT/derivatives/ground_truth/<subject>_fa.nii.gz, <subject>_roi.nii.gz
                 OUT/derivatives/ground_truth/synth.json, README.txt
    misalign:    OUT/derivatives/ground_truth/<subject>_transform.json   the true head movement
    atlas:       OUT/derivatives/ground_truth/template_fa.nii.gz, atlas.nii.gz, atlas_labels.csv
                 (the average brain, unmoved: a reference FA template and a label atlas)

Every file goes through :func:`hcp_cam.io.atomic_path`; ``synth.json`` is written last and marks
a complete synth output (a later run may write over it without ``overwrite``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.io import atomic_path, save_nifti_like, write_json_atomic
from hcp_cam.synth.graded import AGE_EFFECTS, DEFAULT_AGE_RANGE, age_fraction, draw_graded_participants
from hcp_cam.synth.ground_truth import ATLAS_LABELS, atlas_of, readme_text, write_transform
from hcp_cam.synth.nifti_out import reference_image, write_dwi_nifti
from hcp_cam.synth.phantom import (
    DEFAULT_ROI_CENTER,
    DEFAULT_ROI_RADIUS,
    TISSUE_PARAMS,
    make_phantom,
)
from hcp_cam.synth.signal import S0_WHITE_MATTER, GradientScheme, make_gradient_scheme, seed_words
from hcp_cam.synth.subject import (
    DEFAULT_SHAPE,
    DEFAULT_VOXEL_SIZE,
    MAX_ROTATION_DEG,
    MAX_SHIFT_MM,
    SynthSubject,
    check_subject_params,
    draw_misalignment,
    make_subject,
)

__all__ = [
    "AGE_BANDS",
    "LAYOUTS",
    "MANIFEST",
    "SynthAcquisition",
    "SynthDataset",
    "draw_participants",
    "generate_dataset",
]

AGE_BANDS: dict[str, tuple[tuple[int, int], ...]] = {
    "young": ((8, 9), (14, 15)),
    "old": ((25, 35), (45, 55), (65, 75)),
}
LAYOUTS = ("minimal", "unprocessed")
MANIFEST = Path("derivatives") / "ground_truth" / "synth.json"


@dataclass
class SynthAcquisition:
    """The files of one run: DWI ``(X, Y, Z, N)`` NIfTI, FSL bvals/bvecs, and a mask if any."""

    dwi: Path
    bvals: Path
    bvecs: Path
    mask: Path | None = None


@dataclass
class SynthDataset:
    """What :func:`generate_dataset` wrote.

    Attributes:
        root: the dataset folder.
        layout: ``"minimal"`` or ``"unprocessed"``.
        participants: DataFrame with columns ``subject`` (str), ``age`` (int, years), ``group``.
        acquisitions: subject -> its runs (one for ``minimal``, ``2 * n_runs`` for ``unprocessed``).
        true_fa: subject -> noise-free FA map (float32).
        roi: subject -> effect-region mask (uint8), for every subject, young ones included.
        manifest: ``derivatives/ground_truth/synth.json`` (parameters, seed, effect per subject).
        transforms: subject -> ``<subject>_transform.json`` (with ``misalign`` or ``atlas``).
        template: ``template_fa.nii.gz``, noise-free FA of the average, unmoved brain (``atlas``).
        atlas: ``atlas.nii.gz``, its labels (uint8, :data:`ATLAS_LABELS`), and ``atlas_labels``
            their ``index,name`` table (``atlas``).
    """

    root: Path
    layout: str
    participants: pd.DataFrame
    acquisitions: dict[str, list[SynthAcquisition]] = field(default_factory=dict)
    true_fa: dict[str, Path] = field(default_factory=dict)
    roi: dict[str, Path] = field(default_factory=dict)
    manifest: Path | None = None
    transforms: dict[str, Path] = field(default_factory=dict)
    template: Path | None = None
    atlas: Path | None = None
    atlas_labels: Path | None = None

    @property
    def subjects(self) -> list[str]:
        return list(self.participants["subject"])


def draw_participants(n_subjects: int, seed: int | Sequence[int] = 0) -> pd.DataFrame:
    """Subject ids, ages and groups, deterministic from the seed.

    Args:
        n_subjects: number of subjects (>= 1); ``n // 2`` are old, the rest young.
        seed: seed words.

    Returns:
        DataFrame sorted by id with ``subject`` (unique 6-digit strings, HCP-like), ``age`` (int
        years, drawn in :data:`AGE_BANDS`, the bands of a group used in turn) and ``group``.
    """
    if n_subjects < 1:
        raise ConfigError(f"need at least 1 subject, got {n_subjects}")
    rng = np.random.default_rng([*seed_words(seed), 505])
    ids = np.sort(rng.choice(900_000, size=n_subjects, replace=False) + 100_000)
    n_old = n_subjects // 2
    groups = rng.permutation(np.array(["young"] * (n_subjects - n_old) + ["old"] * n_old))
    ages = np.zeros(n_subjects, dtype=int)
    for group, bands in AGE_BANDS.items():
        idx = np.flatnonzero(groups == group)
        order = rng.permutation(len(bands))
        for k, i in enumerate(idx):
            lo, hi = bands[order[k % len(bands)]]
            ages[i] = rng.integers(lo, hi + 1)
    return pd.DataFrame({"subject": [f"{i:06d}" for i in ids], "age": ages, "group": groups})


def _check_target(out: Path, overwrite: bool) -> dict | None:
    """Refuse a non-empty folder that is no synth output; return the previous manifest, if any."""
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", out)
    if not out.exists() or not any(out.iterdir()):
        return None
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as e:
            if not overwrite:
                raise InputError(
                    f"unreadable previous synth manifest ({e}); pass overwrite to replace", manifest
                ) from e
            return None
    if not overwrite:
        raise InputError(
            f"folder is not empty and holds no previous synth output ({MANIFEST} missing); "
            "choose an empty folder or pass --overwrite",
            out,
        )
    return None


def _remove_stale(out: Path, previous: dict | None, written: set[str]) -> None:
    """Delete files a previous synth run wrote that this run did not rewrite (nothing else)."""
    if not previous:
        return
    for rel in previous.get("files", []):
        path = out / rel
        if rel not in written and path.is_file() and out.resolve() in path.resolve().parents:
            path.unlink()
            for parent in path.parents:
                if parent == out or any(parent.iterdir()):
                    break
                parent.rmdir()


def generate_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int = 16,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    snr: float | None = 30.0,
    effect_size: float = 0.5,
    layout: str = "minimal",
    n_b0: int = 3,
    n_per_shell: int = 10,
    shells: Sequence[float] = (1000.0, 2000.0, 3000.0),
    oblique_deg: float = 0.0,
    n_runs: int = 2,
    jitter: float = 1.0,
    roi_center: Sequence[float] = DEFAULT_ROI_CENTER,
    roi_radius: float = DEFAULT_ROI_RADIUS,
    overwrite: bool = False,
    progress: bool = True,
    age_effect: str = "groups",
    age_range: Sequence[float] = DEFAULT_AGE_RANGE,
    misalign: bool = False,
    max_rotation_deg: float = MAX_ROTATION_DEG,
    max_shift_mm: float = MAX_SHIFT_MM,
    atlas: bool | None = None,
) -> SynthDataset:
    """Write ``n_subjects`` synthetic HCP-like subjects with their ground truth under ``out_dir``.

    Args:
        out_dir: dataset root; created if missing. A non-empty folder is refused unless it holds
            a previous synth output (whose files that this run does not rewrite are removed) or
            ``overwrite`` is set (then only files of this run are written; nothing is removed).
        n_subjects: number of subjects (>= 1), half young (8-15 y), half old (25-75 y).
        seed: everything is reproducible from it (same seed, same arrays and bytes).
        shape: grid ``(X, Y, Z)`` (>= 8 each); ``(145, 174, 145)`` with 1.25 mm is HCP's.
        voxel_size: mm, e.g. ``(1.25, 1.25, 1.5)``.
        snr: white-matter S0 over the Rician noise sigma; ``None`` for noise-free data.
        effect_size: old subjects' relative RD increase in the effect region.
        layout: ``"minimal"`` (preprocessed, masked float32) or ``"unprocessed"`` (scanner-like
            int16, noise in the background, ``n_runs`` direction sets x RL/LR, no mask).
        n_b0, n_per_shell, shells: the gradient scheme (see ``make_gradient_scheme``).
        oblique_deg: obliquity of the (rigid, LAS) affine.
        n_runs: direction sets of the unprocessed layout; set ``k`` has ``n_per_shell + k``
            directions per shell, hence a distinct ``dir<NN>``.
        jitter: scale of subject-to-subject variability.
        roi_center, roi_radius: the effect region, normalised brain coordinates.
        overwrite: write into a non-empty folder that is not a synth output.
        progress: show a tqdm bar over subjects.
        age_effect: ``"groups"`` (young without the effect, old with it: the default) or ``"graded"``
            (ages spread evenly over ``age_range``, the RD increase ``effect_size * a * f`` growing
            linearly with the age fraction ``f``; ``participants.csv`` then has ``subject,age`` only:
            :mod:`hcp_cam.synth.graded`).
        age_range: ``(low, high)`` years of the graded mode.
        misalign: rotate (up to ``max_rotation_deg``) and shift (up to ``max_shift_mm``) each
            subject's anatomy inside its grid, drawn from the seed; the true movement goes to
            ``<subject>_transform.json`` (see :func:`~hcp_cam.synth.subject.make_subject`). Off by
            default: the files are then byte for byte those of earlier versions.
        max_rotation_deg, max_shift_mm: bounds of ``misalign``.
        atlas: also write the average, unmoved brain's noise-free FA (``template_fa.nii.gz``) and a
            label atlas of it (``atlas.nii.gz`` + ``atlas_labels.csv``, the effect region one of the
            labels), for group analysis in that space; ``None`` follows ``misalign``.

    Returns:
        a :class:`SynthDataset` with the paths and the participants table.

    Raises:
        ConfigError: a parameter is out of range.
        InputError: ``out_dir`` is a file, or a non-empty folder that is no synth output.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if n_runs < 1:
        raise ConfigError(f"n_runs must be >= 1, got {n_runs}")
    if age_effect not in AGE_EFFECTS:
        raise ConfigError(f"age_effect must be one of {AGE_EFFECTS}, got {age_effect!r}")
    graded = age_effect == "graded"
    if graded:
        participants = draw_graded_participants(n_subjects, seed, age_range)
    else:
        participants = draw_participants(n_subjects, seed)
    schemes = [make_gradient_scheme(n_b0, n_per_shell + r, shells, seed=seed, twist=r) for r in range(n_runs)]
    if layout == "minimal":
        schemes = schemes[:1]
    check_subject_params(shape, voxel_size, effect_size, snr)  # before touching the target folder
    if misalign:
        draw_misalignment(np.random.default_rng(0), max_rotation_deg, max_shift_mm)  # checks the bounds
    atlas = bool(misalign) if atlas is None else bool(atlas)
    out = Path(out_dir)
    previous = _check_target(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    gt_dir = out / "derivatives" / "ground_truth"
    ds = SynthDataset(root=out, layout=layout, participants=participants)
    effects: dict[str, float] = {}
    rows = participants.itertuples(index=False)
    for row in tqdm(rows, total=n_subjects, desc="synth", unit="subject", disable=not progress):
        graded_kw = {"age_fraction": age_fraction(row.age, age_range)} if graded else {}
        subj = make_subject(
            row.subject, row.group or "old", shape, voxel_size, seed=[seed, int(row.subject)], effect_size=effect_size,
            snr=snr, scheme=schemes[0], oblique_deg=oblique_deg, jitter=jitter, roi_center=roi_center,
            roi_radius=roi_radius, misalign=misalign, max_rotation_deg=max_rotation_deg, max_shift_mm=max_shift_mm,
            **graded_kw,
        )  # fmt: skip
        effects[row.subject] = subj.phantom.effect
        ref = reference_image(shape, subj.affine)
        ds.acquisitions[row.subject] = _write_subject(out, subj, schemes, layout, ref)
        ds.true_fa[row.subject] = save_nifti_like(
            subj.fa, ref, gt_dir / f"{row.subject}_fa.nii.gz", "true noise-free FA", np.float32
        )
        ds.roi[row.subject] = save_nifti_like(
            subj.roi, ref, gt_dir / f"{row.subject}_roi.nii.gz", "age-effect region", np.uint8
        )
        if misalign or atlas:
            ds.transforms[row.subject] = write_transform(gt_dir / f"{row.subject}_transform.json", subj)
    if atlas:
        average = make_phantom(shape, voxel_size, rng=None, roi_center=roi_center, roi_radius=roi_radius)
        ref = reference_image(shape, subj.affine)
        ds.template = save_nifti_like(
            average.fa, ref, gt_dir / "template_fa.nii.gz", "FA of the average brain", np.float32
        )
        ds.atlas = save_nifti_like(
            atlas_of(average, subj.affine), ref, gt_dir / "atlas.nii.gz", "labels: atlas_labels.csv", np.uint8
        )
        ds.atlas_labels = gt_dir / "atlas_labels.csv"
        with atomic_path(ds.atlas_labels) as tmp:
            pd.DataFrame({"index": list(ATLAS_LABELS), "name": list(ATLAS_LABELS.values())}).to_csv(
                tmp, index=False
            )
    with atomic_path(out / "participants.csv") as tmp:
        # the graded mode has no groups: the reader's groups rule makes them from the ages
        (participants.drop(columns="group") if graded else participants).to_csv(tmp, index=False)
    params = {
        "n_subjects": n_subjects, "seed": seed, "shape": list(shape), "voxel_size": list(voxel_size), "snr": snr,
        "effect_size": effect_size, "layout": layout, "n_b0": n_b0, "n_per_shell": n_per_shell,
        "shells": list(shells), "oblique_deg": oblique_deg, "n_runs": n_runs if layout == "unprocessed" else 1,
        "jitter": jitter, "roi_center": list(roi_center), "roi_radius": roi_radius,
    }  # fmt: skip
    if graded:  # only then: the default mode's manifest and README stay byte for byte as they were
        params.update(age_effect=age_effect, age_range=[float(a) for a in age_range])
    if misalign:  # only when on: the default manifest stays as it was
        params.update({"misalign": True, "max_rotation_deg": max_rotation_deg, "max_shift_mm": max_shift_mm})
    if atlas:
        params["atlas"] = True
    readme = gt_dir / "README.txt"
    with atomic_path(readme) as tmp:
        tmp.write_text(readme_text(params))
    written = {str(p.relative_to(out)) for p in _all_paths(ds) + [out / "participants.csv", readme]}
    _remove_stale(out, previous, written)
    manifest = {
        "generator": "hcp_cam.synth.generate_dataset",
        "parameters": params,
        "tissue_params": {
            k: {"ad": v[0], "rd": v[1], "s0": v[2] * S0_WHITE_MATTER} for k, v in TISSUE_PARAMS.items()
        },
        "subjects": [
            {
                "subject": r.subject,
                "age": int(r.age),
                "group": r.group,
                "rd_increase_in_roi": effects[r.subject],
            }
            for r in participants.itertuples(index=False)
        ],
        "files": sorted(written | {str(MANIFEST)}),
    }
    ds.manifest = write_json_atomic(manifest, out / MANIFEST)
    return ds


def _write_subject(
    out: Path, subj: SynthSubject, schemes: list[GradientScheme], layout: str, ref: nib.Nifti1Image
) -> list[SynthAcquisition]:
    """Write one subject's runs in the chosen layout and return their paths."""
    shape, sid = subj.phantom.tissue.shape, subj.subject
    if layout == "minimal":
        d = out / sid / "T1w" / "Diffusion"
        acq = SynthAcquisition(d / "data.nii.gz", d / "bvals", d / "bvecs", d / "nodif_brain_mask.nii.gz")
        scheme = schemes[0]
        volumes = subj.volumes(run=0, scheme=scheme, mask_output=True)
        write_dwi_nifti(acq.dwi, volumes, shape, scheme.n, subj.affine, np.float32, "hcp-cam synth DWI")
        scheme.write_fsl(acq.bvals, acq.bvecs, subj.affine)
        save_nifti_like(subj.mask, ref, acq.mask, "brain mask", np.uint8)
        return [acq]
    d = out / sid / "unprocessed" / "3T" / "Diffusion"
    acqs = []
    for r, scheme in enumerate(schemes):
        for p, pe in enumerate(("RL", "LR")):
            stem = d / f"{sid}_3T_DWI_dir{scheme.n}_{pe}"
            acq = SynthAcquisition(Path(f"{stem}.nii.gz"), Path(f"{stem}.bval"), Path(f"{stem}.bvec"))
            volumes = subj.volumes(run=2 * r + p, scheme=scheme)
            write_dwi_nifti(acq.dwi, volumes, shape, scheme.n, subj.affine, np.int16, "hcp-cam synth raw DWI")
            scheme.write_fsl(acq.bvals, acq.bvecs, subj.affine)
            acqs.append(acq)
    return acqs


def _all_paths(ds: SynthDataset) -> list[Path]:
    paths = list(ds.true_fa.values()) + list(ds.roi.values()) + list(ds.transforms.values())
    paths += [p for p in (ds.template, ds.atlas, ds.atlas_labels) if p is not None]
    for acqs in ds.acquisitions.values():
        for a in acqs:
            paths += [a.dwi, a.bvals, a.bvecs] + ([a.mask] if a.mask else [])
    return paths
