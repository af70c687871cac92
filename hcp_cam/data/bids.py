"""Raw BIDS diffusion data, found with pybids: ``sub-<label>[/ses-<label>]/dwi/*_dwi.nii[.gz]``.

The index is pybids' ``BIDSLayout(validate=False)``, stored as pybids' SQLite database in a cache
folder and reused while the tree is unchanged (:func:`bids_index`), so a large dataset is not
re-indexed on every run. Gradient files are found by the BIDS inheritance principle
(:func:`gradient_files`): beside the DWI or in any folder above it up to the dataset root (a
top-level ``dwi.bval`` applies to every DWI), the nearest applicable file winning.

Every acquisition (session, run, ``acq-``, ``dir-``) of a subject is one :class:`Acquisition` of
subject ``sub-<label>``; the subject-level split keeps them together. Raw BIDS has no brain mask:
``compute_mask`` is set and one is computed from the mean b0 (:mod:`hcp_cam.data.brain_mask`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from hcp_cam.data.discovery import Acquisition
from hcp_cam.errors import InputError

__all__ = [
    "BIDS_PATTERN",
    "ENTITY_ORDER",
    "bids_index",
    "tree_fingerprint",
    "find_bids_acquisitions",
    "gradient_files",
    "check_gradient_counts",
    "acquisition_name",
]

logger = logging.getLogger(__name__)

BIDS_PATTERN = (
    "sub-<label>[/ses-<label>]/dwi/sub-<label>[_ses-<label>][_acq-..][_dir-..][_run-..]_dwi.nii[.gz]"
)
# entities kept with an acquisition, in the order BIDS writes them in a file name
ENTITY_ORDER = ("session", "acquisition", "direction", "run", "space", "desc")
_NIFTI_EXTENSIONS = [".nii.gz", ".nii"]
# folders pybids should not index: BIDS' own exclusions, derivatives (indexed on their own), and
# every data type of a subject but dwi (a 1,000-subject dataset holds far more anat/func files)
_IGNORE_RAW = (
    re.compile(r"^/(code|models|sourcedata|stimuli|derivatives)(/|$)"),
    re.compile(r"^/sub-[^/]+/(?!ses-)(?!dwi/)[^/]+/"),
    re.compile(r"^/sub-[^/]+/ses-[^/]+/(?!dwi/)[^/]+/"),
)
_IGNORE_DERIVATIVE = (
    re.compile(r"^/(code|figures|logs|sourcedata|derivatives)(/|$)"),
    re.compile(r"^/sub-[^/]+/(?!ses-)(?!dwi/)[^/]+/"),
    re.compile(r"^/sub-[^/]+/ses-[^/]+/(?!dwi/)[^/]+/"),
)
_NOT_INHERITED = {"suffix", "extension", "datatype"}


def tree_fingerprint(root: str | os.PathLike, derivative: bool = False) -> str:
    """SHA-1 of every indexed file's relative path, size and modification time (16 hex digits).

    The same rules as the index decide which files count, so a new, removed or rewritten file gives
    a new fingerprint (and a new index), while outputs written elsewhere do not.
    """
    root = Path(root).resolve()
    ignore = _IGNORE_DERIVATIVE if derivative else _IGNORE_RAW
    digest = hashlib.sha1()
    for folder, dirs, files in os.walk(root):
        rel = "" if Path(folder) == root else "/" + Path(folder).relative_to(root).as_posix()
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not any(p.search(f"{rel}/{d}/") for p in ignore)
        )
        for name in sorted(files):
            path = f"{rel}/{name}"
            if name.startswith(".") or any(p.search(path) for p in ignore):
                continue
            st = os.stat(os.path.join(folder, name))
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def bids_index(root: str | os.PathLike, index_dir: str | os.PathLike | None = None, derivative: bool = False):
    """pybids' ``BIDSLayout`` of ``root`` (``validate=False``, no metadata indexed), cached on disk.

    With ``index_dir`` the layout's SQLite database is kept in
    ``<index_dir>/<dataset key>/<tree fingerprint>/`` and loaded instead of re-indexing while the
    tree is unchanged; a changed tree gets a new database and the older ones of that dataset are
    removed. The database is built in a temporary folder and renamed, so concurrent runs (one per
    GPU) never read half of one.

    Args:
        root: the dataset folder.
        index_dir: the cache folder for databases; ``None`` indexes in memory every time.
        derivative: index as a derivatives dataset (pybids' ``derivatives`` entities: ``desc``, ``space``...).

    Returns:
        a ``bids.BIDSLayout``.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    from hcp_cam.data.cache import dataset_key

    # pybids' schema package logs which schema it loads, at INFO, on every index
    logging.getLogger("bidsschematools").setLevel(logging.WARNING)

    root = Path(root).resolve()
    config = ["bids", "derivatives"] if derivative else ["bids"]
    ignore = list(_IGNORE_DERIVATIVE if derivative else _IGNORE_RAW)

    def build(database_path: Path | None):
        indexer = BIDSLayoutIndexer(validate=False, index_metadata=False, ignore=ignore)
        return BIDSLayout(
            root, validate=False, config=config, indexer=indexer, is_derivative=derivative,
            database_path=None if database_path is None else str(database_path),
        )  # fmt: skip

    if index_dir is None:
        return build(None)
    parent = Path(index_dir) / dataset_key(root)
    final = parent / f"{'derivative' if derivative else 'raw'}-{tree_fingerprint(root, derivative)}"
    if not (final / "layout_index.sqlite").is_file():
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".index-", dir=parent))
        try:
            build(tmp)
            with contextlib.suppress(OSError):  # another process renamed its copy first: use that one
                os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in parent.iterdir():
            if old != final and old.name.startswith(final.name.split("-")[0] + "-"):
                shutil.rmtree(old, ignore_errors=True)
        logger.info("indexed %s with pybids; index kept in %s", root, final)
    return build(final)


def acquisition_name(filename: str, subject: str) -> str:
    """The acquisition's name: the file name without ``sub-<label>_`` and the NIfTI extension,
    e.g. ``sub-01_ses-1_run-2_dwi.nii.gz`` -> ``ses-1_run-2_dwi`` (``dwi`` when nothing else)."""
    name = re.sub(r"\.nii(\.gz)?$", "", filename)
    prefix = f"{subject}_"
    return name[len(prefix) :] if name.startswith(prefix) else name


def _entities(bids_file: Any) -> tuple[tuple[str, str], ...]:
    ents = bids_file.get_entities()
    return tuple((k, str(ents[k])) for k in ENTITY_ORDER if k in ents)


def gradient_files(layout: Any, dwi: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """The ``.bval`` and ``.bvec`` that apply to ``dwi`` by the BIDS inheritance principle.

    pybids' ``get_nearest`` walks up from the DWI's folder; of its candidates only those whose
    entities are a subset of the DWI's apply (``acq-hi_dwi.bval`` does not apply to a DWI without
    ``acq-hi``, which pybids' ``get_bval`` would return), and the nearest, most specific one wins.

    Returns:
        ``(bval, bvec)``, each ``None`` when no applicable file exists.
    """
    dwi_file = layout.get_file(str(dwi))
    own = {k: v for k, v in dwi_file.get_entities().items() if k not in _NOT_INHERITED}
    found: list[Path | None] = []
    for ext in (".bval", ".bvec"):
        candidates = layout.get_nearest(str(dwi), suffix="dwi", extension=ext, all_=True, strict=True) or []
        applicable = None
        for path in candidates if isinstance(candidates, list) else [candidates]:
            ents = {k: v for k, v in layout.get_file(path).get_entities().items() if k not in _NOT_INHERITED}
            if all(k in own and own[k] == v for k, v in ents.items()):
                applicable = Path(path)
                break
        found.append(applicable)
    return found[0], found[1]


def _count_values(path: Path, what: str) -> np.ndarray:
    try:
        rows = [r.split() for r in path.read_text().splitlines() if r.strip()]
        return np.array([[float(x) for x in r] for r in rows], dtype=float)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the {what} as numbers: {e}", path) from e


def check_gradient_counts(dwi: Path, bvals: Path, bvecs: Path, root: Path | None = None) -> int:
    """Check that the gradient files hold one value/direction per DWI volume; return N.

    Only the NIfTI header is read. Files found by inheritance are named as such in the message.

    Raises:
        InputError: the DWI is not 4D; the bval count or the bvec shape (3 x N or N x 3) does not
            match its N volumes (the message names the gradient file and the DWI).
    """
    import nibabel as nib

    try:
        shape = nib.load(str(dwi)).shape
    except Exception as e:  # nibabel raises several types for a file that is not NIfTI
        raise InputError(f"cannot read the DWI header: {e}", dwi) from e
    if len(shape) != 4:
        raise InputError(f"a DWI must be 4D (X, Y, Z, N), found shape {tuple(shape)}", dwi)
    n = int(shape[3])
    rel = dwi.relative_to(root).as_posix() if root is not None and root in dwi.parents else dwi.name

    def note(path: Path) -> str:
        return "" if path.parent == dwi.parent else " (inherited from a folder above the DWI)"

    b = _count_values(bvals, "b-values").ravel()
    if b.size != n:
        raise InputError(f"{b.size} b-values but the DWI {rel} has {n} volumes{note(bvals)}", bvals)
    v = _count_values(bvecs, "b-vectors")
    if v.ndim != 2 or not ((v.shape[0] == 3 and v.shape[1] == n) or (v.shape[1] == 3 and v.shape[0] == n)):
        found = "x".join(str(s) for s in v.shape) if v.ndim == 2 else f"{v.size} values"
        raise InputError(f"b-vectors are {found}, expected 3 x {n} for the DWI {rel}{note(bvecs)}", bvecs)
    return n


def find_bids_acquisitions(
    root: str | os.PathLike, index_dir: str | os.PathLike | None = None
) -> list[Acquisition]:
    """Every raw DWI of a BIDS dataset, with its inherited gradient files; no mask (computed later).

    Args:
        root: the BIDS root (the folder with ``dataset_description.json`` and ``sub-*``).
        index_dir: where pybids' database is cached (see :func:`bids_index`); ``None``: in memory.

    Returns:
        the acquisitions sorted by subject and name; ``subject`` is ``sub-<label>``, ``acquisition``
        e.g. ``ses-1_dwi``, ``entities`` the session/acq/dir/run, ``compute_mask`` True.

    Raises:
        InputError: no ``*_dwi.nii[.gz]``; a DWI without an applicable ``.bval``/``.bvec``; gradient
            files whose count does not match the DWI; the same DWI stored as ``.nii`` and ``.nii.gz``.
    """
    root = Path(root).resolve()
    layout = bids_index(root, index_dir)
    files = layout.get(datatype="dwi", suffix="dwi", extension=_NIFTI_EXTENSIONS)
    if not files:
        raise InputError(f"a BIDS root without any *_dwi.nii[.gz]: looked for {BIDS_PATTERN}", root)
    return _acquisitions(layout, files, root, compute_mask=True)


def _acquisitions(
    layout: Any, files: Iterable[Any], root: Path, compute_mask: bool, masks: dict[str, Path] | None = None
) -> list[Acquisition]:
    found: dict[tuple[str, str], Acquisition] = {}
    for f in files:
        dwi = Path(f.path)
        subject = f"sub-{f.get_entities()['subject']}"
        name = acquisition_name(dwi.name, subject)
        if (subject, name) in found:
            other = found[(subject, name)].dwi
            raise InputError(f"stored twice, as {other.name} and {dwi.name}", dwi.parent)
        bval, bvec = gradient_files(layout, dwi)
        for path, ext in ((bval, ".bval"), (bvec, ".bvec")):
            if path is None:
                raise InputError(
                    f"no {ext} for this DWI beside it or in any folder above it up to {root} "
                    f"(BIDS inheritance: e.g. {dwi.name.split('.')[0]}{ext} or a top-level dwi{ext})",
                    dwi,
                )
        check_gradient_counts(dwi, bval, bvec, root)
        mask = (masks or {}).get(str(dwi))
        found[(subject, name)] = Acquisition(
            subject=subject, acquisition=name, dwi=dwi, bvals=bval, bvecs=bvec, mask=mask,
            compute_mask=compute_mask and mask is None, entities=_entities(f),
        )  # fmt: skip
    return [found[k] for k in sorted(found)]
