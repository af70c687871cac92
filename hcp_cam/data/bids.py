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
    "GradientFiles",
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


def _entities(ents: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The kept entities (:data:`ENTITY_ORDER`) of a pybids entity dict, as text."""
    return tuple((k, str(ents[k])) for k in ENTITY_ORDER if k in ents)


class GradientFiles:
    """The ``.bval``/``.bvec`` that apply to each DWI of an index, by the BIDS inheritance principle.

    From the DWI's folder up to the dataset root, the first folder holding an applicable file wins;
    a file applies when its entities are a subset of the DWI's (``acq-hi_dwi.bval`` applies to
    ``sub-01_acq-hi_dwi.nii.gz``, not to ``sub-01_dwi.nii.gz``, which pybids' ``get_bval`` would
    return), and of several in one folder the most specific wins. The gradient files are read from
    the index once: pybids' ``get_nearest`` queries the whole index per call (0.13 s per DWI on 2
    cores, minutes for a large dataset; ``benchmarks/bench_bids_index.py``).

    Args:
        layout: a ``bids.BIDSLayout``.
    """

    def __init__(self, layout: Any):
        self.root = Path(layout.root).resolve()
        self._by_folder: dict[tuple[Path, str], list[tuple[dict[str, Any], Path]]] = {}
        for f in layout.get(suffix="dwi", extension=[".bval", ".bvec"]):
            ents = f.get_entities()
            own = {k: v for k, v in ents.items() if k not in _NOT_INHERITED}
            self._by_folder.setdefault((Path(f.path).parent, ents["extension"]), []).append(
                (own, Path(f.path))
            )

    def find(self, dwi: str | os.PathLike, entities: dict[str, Any]) -> tuple[Path | None, Path | None]:
        """``(bval, bvec)`` of the DWI at ``dwi`` with pybids ``entities``; ``None`` where none applies.

        Raises:
            InputError: two files apply equally at the same level (BIDS forbids it).
        """
        own = {k: v for k, v in entities.items() if k not in _NOT_INHERITED}
        found: list[Path | None] = []
        for ext in (".bval", ".bvec"):
            folder, choice = Path(dwi).parent, None
            while choice is None:
                applicable = [
                    (len(ents), path)
                    for ents, path in self._by_folder.get((folder, ext), [])
                    if all(k in own and own[k] == v for k, v in ents.items())
                ]
                if applicable:
                    applicable.sort(key=lambda a: -a[0])
                    if len(applicable) > 1 and applicable[0][0] == applicable[1][0]:
                        names = " and ".join(a[1].name for a in applicable[:2])
                        raise InputError(f"both {names} apply to {Path(dwi).name} at the same level", folder)
                    choice = applicable[0][1]
                if folder == self.root or folder.parent == folder:
                    break
                folder = folder.parent
            found.append(choice)
        return found[0], found[1]


def gradient_files(layout: Any, dwi: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """The ``.bval`` and ``.bvec`` that apply to one indexed ``dwi`` (see :class:`GradientFiles`)."""
    return GradientFiles(layout).find(dwi, layout.get_file(str(dwi)).get_entities())


def _count_values(path: Path, what: str, cache: dict | None = None) -> np.ndarray:
    if cache is not None and (path, what) in cache:
        return cache[(path, what)]
    try:
        rows = [r.split() for r in path.read_text().splitlines() if r.strip()]
        values = np.array([[float(x) for x in r] for r in rows], dtype=float)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the {what} as numbers: {e}", path) from e
    if cache is not None:
        cache[(path, what)] = values
    return values


def check_gradient_counts(
    dwi: Path, bvals: Path, bvecs: Path, root: Path | None = None, cache: dict | None = None
) -> int:
    """Check that the gradient files hold one value/direction per DWI volume; return N.

    Only the NIfTI header is read. Files found by inheritance are named as such in the message.
    ``cache`` (a dict) keeps parsed gradient files between calls: an inherited file is read once.

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

    b = _count_values(bvals, "b-values", cache).ravel()
    if b.size != n:
        raise InputError(f"{b.size} b-values but the DWI {rel} has {n} volumes{note(bvals)}", bvals)
    v = _count_values(bvecs, "b-vectors", cache)
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
    gradients, parsed = GradientFiles(layout), {}
    for f in files:
        dwi = Path(f.path)
        ents = f.get_entities()
        subject = f"sub-{ents['subject']}"
        name = acquisition_name(dwi.name, subject)
        if (subject, name) in found:
            other = found[(subject, name)].dwi
            raise InputError(f"stored twice, as {other.name} and {dwi.name}", dwi.parent)
        bval, bvec = gradients.find(dwi, ents)
        for path, ext in ((bval, ".bval"), (bvec, ".bvec")):
            if path is None:
                raise InputError(
                    f"no {ext} for this DWI beside it or in any folder above it up to {root} "
                    f"(BIDS inheritance: e.g. {dwi.name.split('.')[0]}{ext} or a top-level dwi{ext})",
                    dwi,
                )
        check_gradient_counts(dwi, bval, bvec, root, parsed)
        mask = (masks or {}).get(str(dwi))
        found[(subject, name)] = Acquisition(
            subject=subject, acquisition=name, dwi=dwi, bvals=bval, bvecs=bvec, mask=mask,
            compute_mask=compute_mask and mask is None, entities=_entities(ents),
        )  # fmt: skip
    return [found[k] for k in sorted(found)]
