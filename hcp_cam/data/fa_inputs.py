"""FA maps given instead of DWIs: the tensor fit is skipped.

Two forms are read:

- **QSIRecon** (BIDS derivatives): ``sub-<label>[/ses-<label>]/dwi/*_param-fa_dwimap.nii[.gz]``
  (e.g. ``sub-01_space-ACPC_model-tensor_param-fa_dwimap.nii.gz``), with a
  ``*_desc-brain_mask.nii[.gz]`` of the same entities where there is one;
- **a table** ``fa_maps.csv`` or ``fa_maps.tsv`` in the folder, mapping files to subjects: columns
  ``subject`` (or ``participant_id``), ``fa`` (the FA NIfTI, relative to the folder or absolute),
  and optionally ``acquisition`` (a name, needed when a subject has several maps) and ``mask``.

Without a mask, the brain is where FA > 0 (as a fit inside a mask leaves it).
"""

from __future__ import annotations

import os
from pathlib import Path

from hcp_cam.data.bids import _NIFTI_EXTENSIONS, _entities, acquisition_name, bids_index
from hcp_cam.data.discovery import Acquisition
from hcp_cam.errors import InputError

__all__ = ["FA_TABLE_NAMES", "QSIRECON_PATTERN", "find_fa_acquisitions", "find_fa_table"]

FA_TABLE_NAMES = ("fa_maps.csv", "fa_maps.tsv")
QSIRECON_PATTERN = "sub-<label>[/ses-<label>]/dwi/sub-<label>[_ses-<label>]..._param-fa_dwimap.nii[.gz]"
_SUBJECT_COLUMNS = ("subject", "participant_id", "subject_id")


def find_fa_table(root: str | os.PathLike) -> Path | None:
    """``fa_maps.csv`` or ``fa_maps.tsv`` in ``root``, or ``None``.

    Raises:
        InputError: both exist.
    """
    found = [Path(root) / n for n in FA_TABLE_NAMES if (Path(root) / n).is_file()]
    if len(found) > 1:
        raise InputError(f"both {' and '.join(FA_TABLE_NAMES)} exist; keep one", root)
    return found[0] if found else None


def _check_3d(path: Path, what: str) -> None:
    import nibabel as nib

    try:
        shape = nib.load(str(path)).shape
    except FileNotFoundError as e:
        raise InputError(f"{what} not found", path) from e
    except Exception as e:  # nibabel raises several types for a file that is not NIfTI
        raise InputError(f"cannot read the {what} header: {e}", path) from e
    if len(shape) != 3:
        raise InputError(f"an {what} must be 3D (X, Y, Z), found shape {tuple(shape)}", path)


def find_fa_acquisitions(
    root: str | os.PathLike, index_dir: str | os.PathLike | None = None
) -> list[Acquisition]:
    """Every given FA map of ``root``: from ``fa_maps.csv``/``.tsv`` if present, else QSIRecon names.

    Returns:
        acquisitions with ``fa`` (and ``mask`` where given) and no DWI, sorted by subject and name.

    Raises:
        InputError: an unreadable or incomplete table (columns, empty cells, a subject's
            acquisition listed twice); a listed file that is missing or not 3D; no FA map at all.
    """
    root = Path(root).resolve()
    table = find_fa_table(root)
    found = _from_table(root, table) if table is not None else _from_qsirecon(root, index_dir)
    for acq in found:
        _check_3d(acq.fa, "FA map")
        if acq.mask is not None:
            _check_3d(acq.mask, "brain mask")
    return sorted(found, key=lambda a: (a.subject, a.acquisition))


def _from_table(root: Path, table: Path) -> list[Acquisition]:
    import pandas as pd

    sep = "\t" if table.suffix == ".tsv" else ","
    try:
        df = pd.read_csv(table, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read as a CSV/TSV table: {e}", table) from e
    columns = {str(c).strip().lower(): c for c in df.columns}
    subject_col = next((columns[c] for c in _SUBJECT_COLUMNS if c in columns), None)
    if subject_col is None or "fa" not in columns:
        raise InputError(
            f"an FA table needs columns 'subject' and 'fa' (optional 'acquisition', 'mask'); "
            f"found columns {[str(c) for c in df.columns]}",
            table,
        )
    acquisitions: dict[tuple[str, str], Acquisition] = {}
    for i, row in df.iterrows():
        line = int(i) + 2  # header line, 1-based
        subject, fa = str(row[subject_col]).strip(), str(row[columns["fa"]]).strip()
        if not subject or not fa:
            raise InputError(f"line {line}: empty subject or fa", table)
        fa_path = Path(fa) if Path(fa).is_absolute() else root / fa
        name = str(row[columns["acquisition"]]).strip() if "acquisition" in columns else ""
        name = name or acquisition_name(fa_path.name, subject)
        mask_text = str(row[columns["mask"]]).strip() if "mask" in columns else ""
        mask = (
            None
            if not mask_text
            else (Path(mask_text) if Path(mask_text).is_absolute() else root / mask_text)
        )
        if (subject, name) in acquisitions:
            raise InputError(
                f"line {line}: subject {subject} has two FA maps named {name!r}; give an 'acquisition' column",
                table,
            )
        acquisitions[(subject, name)] = Acquisition(
            subject=subject, acquisition=name, dwi=None, bvals=None, bvecs=None, mask=mask, fa=fa_path
        )
    if not acquisitions:
        raise InputError("the FA table lists no map", table)
    return list(acquisitions.values())


def _from_qsirecon(root: Path, index_dir: str | os.PathLike | None) -> list[Acquisition]:
    layout = bids_index(root, index_dir, derivative=True)
    maps = [
        f
        for f in layout.get(suffix="dwimap", extension=_NIFTI_EXTENSIONS)
        if "_param-fa_" in f.filename or f.filename.startswith("param-fa_")
    ]
    if not maps:
        raise InputError(
            f"no FA maps: looked for {QSIRECON_PATTERN} and for a table {' or '.join(FA_TABLE_NAMES)}", root
        )
    masks = {}
    for m in layout.get(suffix="mask", desc="brain", extension=_NIFTI_EXTENSIONS):
        ents = dict(_entities(m.get_entities()))
        masks[(m.get_entities()["subject"], ents.get("session"), ents.get("space"))] = Path(m.path)
    found = []
    for f in maps:
        all_ents = f.get_entities()
        ents = dict(_entities(all_ents))
        label = all_ents["subject"]
        subject = f"sub-{label}"
        found.append(
            Acquisition(
                subject=subject, acquisition=acquisition_name(f.filename, subject), dwi=None, bvals=None,
                bvecs=None, mask=masks.get((label, ents.get("session"), ents.get("space"))), fa=Path(f.path),
                entities=tuple(ents.items()),
            )
        )  # fmt: skip
    return found
