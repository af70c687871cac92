"""Find the diffusion acquisitions of a dataset folder laid out the way HCP ships them.

Two layouts are recognised, per subject folder ``<root>/<subject>/``:

- minimally preprocessed: ``T1w/Diffusion/{data.nii.gz, bvals, bvecs, nodif_brain_mask.nii.gz}``,
  one acquisition named ``dwi``;
- unprocessed: ``unprocessed/3T/Diffusion/<subject>_3T_DWI_dir<NN>_{RL,LR}[_gdc].nii.gz`` with
  ``.bval``/``.bvec`` beside it, one acquisition per run, named e.g. ``dir95_RL`` or ``dir95_RL_gdc``.
  A ``_gdc`` (gradient-distortion-corrected) run shares the gradient files of its uncorrected run.

Only the existence of files is checked here; loading is the transforms' job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from hcp_cam.errors import InputError

__all__ = ["Acquisition", "discover_acquisitions", "LAYOUTS", "HCP_KINDS"]

# relative to <root>/<subject>/, as shown in error messages and docs/data.md
PREPROCESSED_DIR = Path("T1w", "Diffusion")
UNPROCESSED_DIR = Path("unprocessed", "3T", "Diffusion")
LAYOUTS = (
    f"<root>/<subject>/{PREPROCESSED_DIR.as_posix()}/data.nii.gz (+ bvals, bvecs, nodif_brain_mask.nii.gz)",
    f"<root>/<subject>/{UNPROCESSED_DIR.as_posix()}/<subject>_3T_DWI_dir<NN>_{{RL,LR}}[_gdc].nii.gz "
    "(+ .bval, .bvec)",
)
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
# the two HCP layouts, as ``discover_acquisitions(kinds=...)`` names them
HCP_KINDS = ("preprocessed", "unprocessed")


@dataclass(frozen=True)
class Acquisition:
    """One diffusion acquisition (a 4D DWI with its gradient table, or a given FA map) of one subject.

    Attributes:
        subject: the subject folder's name, e.g. ``"100307"`` or ``"sub-01"`` (a string: leading
            zeros kept).
        acquisition: ``"dwi"`` for the preprocessed layout, the run name (``"dir95_RL"``,
            ``"dir95_RL_gdc"``) for the unprocessed one, the file name without ``sub-<label>_`` and
            extension for BIDS (``"ses-01_run-1_dwi"``).
        dwi: the 4D NIfTI file ``(X, Y, Z, N)``; ``None`` where the FA map is given.
        bvals: text file of N b-values in s/mm^2 (``None`` with a given FA map).
        bvecs: text file of the N gradient directions (FSL layout, 3 x N; ``None`` with a given FA map).
        mask: the brain mask ``(X, Y, Z)``, or ``None`` where the layout has none.
        fa: a given FA map ``(X, Y, Z)`` (QSIRecon, or a table of FA files): no tensor fit.
        compute_mask: the layout has no brain mask and one is computed from the mean b0
            (:func:`hcp_cam.data.brain_mask.compute_brain_mask`), as for raw BIDS.
        entities: BIDS entities other than the subject, e.g. ``(("session", "01"), ("run", "1"))``.
    """

    subject: str
    acquisition: str
    dwi: Path | None
    bvals: Path | None
    bvecs: Path | None
    mask: Path | None = None
    fa: Path | None = None
    compute_mask: bool = False
    entities: tuple[tuple[str, str], ...] = ()


def discover_acquisitions(root: str | os.PathLike, kinds: Collection[str] = HCP_KINDS) -> list[Acquisition]:
    """List every diffusion acquisition under ``root``, in either HCP layout.

    Folders under ``root`` that hold neither layout (hidden folders, caches, outputs) are ignored.
    A subject may hold both layouts; each acquisition is then listed. (BIDS, QSIPrep and given FA
    maps: :func:`hcp_cam.data.layouts.find_acquisitions`.)

    Args:
        root: the dataset folder, whose sub-folders are subjects.
        kinds: the HCP layouts to look for, from :data:`HCP_KINDS`.

    Returns:
        the acquisitions sorted by subject, then acquisition name.

    Raises:
        InputError: ``root`` is not a folder; a DWI was found without its bvals/bvecs (the
            message names the missing file); no acquisition was found in either layout (the
            message lists the layouts looked for).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("dataset folder not found (or not a folder)", root)
    found: list[Acquisition] = []
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if "preprocessed" in kinds:
            found.extend(_preprocessed(subject_dir))
        if "unprocessed" in kinds:
            found.extend(_unprocessed(subject_dir))
    if not found:
        looked_for = "; ".join(
            layout for kind, layout in zip(HCP_KINDS, LAYOUTS, strict=True) if kind in kinds
        )
        raise InputError(f"no diffusion acquisitions found; looked for the HCP layouts: {looked_for}", root)
    return sorted(found, key=lambda a: (a.subject, a.acquisition))


def _preprocessed(subject_dir: Path) -> list[Acquisition]:
    folder = subject_dir / PREPROCESSED_DIR
    dwi = _first_existing(folder / f"data{s}" for s in _NIFTI_SUFFIXES)
    if dwi is None:
        return []
    mask = _first_existing(folder / f"nodif_brain_mask{s}" for s in _NIFTI_SUFFIXES)
    return [
        Acquisition(
            subject=subject_dir.name,
            acquisition="dwi",
            dwi=dwi,
            bvals=_required(folder / "bvals", dwi),
            bvecs=_required(folder / "bvecs", dwi),
            mask=mask,
        )
    ]


def _unprocessed(subject_dir: Path) -> list[Acquisition]:
    folder = subject_dir / UNPROCESSED_DIR
    if not folder.is_dir():
        return []
    # the file name repeats the subject; a file of another subject is not this subject's run
    pattern = re.compile(
        rf"^{re.escape(subject_dir.name)}_3T_DWI_(?P<run>dir\d+_(?:RL|LR))(?P<gdc>_gdc)?\.nii(?:\.gz)?$"
    )
    runs: dict[str, Acquisition] = {}
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if match is None or not path.is_file():
            continue
        # gradient files are written once per run, without the _gdc suffix
        stem = f"{subject_dir.name}_3T_DWI_{match['run']}"
        name = match["run"] + (match["gdc"] or "")
        if name in runs:
            raise InputError(f"run {name} is stored twice ({runs[name].dwi.name} and {path.name})", folder)
        runs[name] = Acquisition(
            subject=subject_dir.name,
            acquisition=name,
            dwi=path,
            bvals=_required(folder / f"{stem}.bval", path),
            bvecs=_required(folder / f"{stem}.bvec", path),
            mask=None,
        )
    return list(runs.values())


def _first_existing(candidates) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _required(path: Path, dwi: Path) -> Path:
    if not path.is_file():
        raise InputError(f"missing gradient file for the DWI {dwi.name} (expected beside it)", path)
    return path
