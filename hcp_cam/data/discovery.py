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
from dataclasses import dataclass
from pathlib import Path

from hcp_cam.errors import InputError

__all__ = ["Acquisition", "discover_acquisitions", "LAYOUTS"]

# relative to <root>/<subject>/, as shown in error messages and docs/data.md
PREPROCESSED_DIR = Path("T1w", "Diffusion")
UNPROCESSED_DIR = Path("unprocessed", "3T", "Diffusion")
LAYOUTS = (
    f"<root>/<subject>/{PREPROCESSED_DIR.as_posix()}/data.nii.gz (+ bvals, bvecs, nodif_brain_mask.nii.gz)",
    f"<root>/<subject>/{UNPROCESSED_DIR.as_posix()}/<subject>_3T_DWI_dir<NN>_{{RL,LR}}[_gdc].nii.gz "
    "(+ .bval, .bvec)",
)
_NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Acquisition:
    """One diffusion acquisition (a 4D DWI with its gradient table) of one subject.

    Attributes:
        subject: the subject folder's name, e.g. ``"100307"`` (a string: leading zeros kept).
        acquisition: ``"dwi"`` for the preprocessed layout, the run name (``"dir95_RL"``,
            ``"dir95_RL_gdc"``) for the unprocessed one.
        dwi: the 4D NIfTI file ``(X, Y, Z, N)``.
        bvals: text file of N b-values in s/mm^2.
        bvecs: text file of the N gradient directions (FSL layout, 3 x N).
        mask: the brain mask ``(X, Y, Z)``, or ``None`` where the layout has none.
    """

    subject: str
    acquisition: str
    dwi: Path
    bvals: Path
    bvecs: Path
    mask: Path | None = None


def discover_acquisitions(root: str | os.PathLike) -> list[Acquisition]:
    """List every diffusion acquisition under ``root``, in either HCP layout.

    Folders under ``root`` that hold neither layout (hidden folders, caches, outputs) are ignored.
    A subject may hold both layouts; each acquisition is then listed.

    Args:
        root: the dataset folder, whose sub-folders are subjects.

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
        found.extend(_preprocessed(subject_dir))
        found.extend(_unprocessed(subject_dir))
    if not found:
        looked_for = "; ".join(LAYOUTS)
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
