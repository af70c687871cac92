"""The FA cache of a dataset: ``<root>/<subject>/<acquisition>_fa.nii.gz``, each with a stamp beside it.

An entry is reused only when it can be trusted (:func:`cache_entry_problem` finds nothing): the FA
loads whole (a truncated ``.nii.gz`` fails its decode), it lies on the grid of the source DWI
(shape and affine from the DWI's header), and its stamp ``<acquisition>_fa.json`` records the
size and modification time of every source file (DWI, b-values, b-vectors, mask) as they are now.
The FA is written first and the stamp after it, both atomically, so a run killed in between leaves
an entry without a stamp, which is computed again. A killed run leaves hidden temporaries
(``.<acquisition>_fa.*.tmp.nii.gz``); the next run that handles the entry removes those older
than its own start.

Shards of one cache run at once in separate jobs: each handles (and cleans) only its own entries.
Imports numpy and nibabel only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from hcp_cam import __version__
from hcp_cam.errors import HcpCamError, InputError
from hcp_cam.io import load_nifti, write_json_atomic

__all__ = [
    "fa_cache_path",
    "stamp_path",
    "source_stamp",
    "cache_entry_problem",
    "remove_stale_temporaries",
    "fa_for_acquisition",
]

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike
_STARTED = time.time()  # temporaries older than this process belong to a run that has ended
_AFFINE_ATOL = 1e-5  # mm: the FA header is the DWI header copied


def fa_cache_path(out_dir: PathLike, subject: str, acquisition: str) -> Path:
    """Cache file of one acquisition's FA: ``<out_dir>/<subject>/<acquisition>_fa.nii.gz``."""
    for part, what in ((subject, "subject"), (acquisition, "acquisition")):
        if not part or "/" in part or "\\" in part or part in (".", ".."):
            raise InputError(f"{what} name {part!r} cannot be used as a file name", out_dir)
    return Path(out_dir) / subject / f"{acquisition}_fa.nii.gz"


def stamp_path(fa_path: PathLike) -> Path:
    """The stamp beside a cached FA: ``<acquisition>_fa.json``."""
    fa_path = Path(fa_path)
    return fa_path.with_name(fa_path.name[: -len(".nii.gz")] + ".json")


def _file_stamp(path: PathLike | None) -> dict[str, Any] | None:
    if path is None:
        return None
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def source_stamp(
    dwi: PathLike, bvals: PathLike, bvecs: PathLike, mask: PathLike | None
) -> dict[str, dict[str, Any] | None]:
    """Resolved path, size and mtime (ns) of each source file of an FA map (``mask`` may be None).

    Raises:
        InputError: a source file is missing.
    """
    try:
        return {
            k: _file_stamp(p) for k, p in (("dwi", dwi), ("bvals", bvals), ("bvecs", bvecs), ("mask", mask))
        }
    except FileNotFoundError as e:
        raise InputError("file not found", e.filename) from e


def cache_entry_problem(fa_path: PathLike, dwi: PathLike, sources: dict[str, Any]) -> str | None:
    """Why a cache entry cannot be reused, or None when it can.

    Args:
        fa_path: the cached FA.
        dwi: its source DWI (its header gives the grid the FA must lie on).
        sources: :func:`source_stamp` of the source files now.

    Returns:
        None, or a short reason ("no stamp", "does not load: ...", "shape ... differs", ...).
    """
    fa_path = Path(fa_path)
    if not fa_path.is_file():
        return "missing"
    try:
        stamp = json.loads(stamp_path(fa_path).read_text())
    except (OSError, ValueError):
        return "no readable stamp beside it"
    if not isinstance(stamp, dict) or stamp.get("sources") != sources:
        return "the source files changed since it was written (size or modification time)"
    try:
        fa = load_nifti(fa_path, ndim=3)  # decodes it all: a truncated file fails here
    except HcpCamError as e:
        return f"does not load ({e})"
    ref = nib.load(str(dwi))
    if tuple(fa.shape) != tuple(ref.shape[:3]):
        return f"shape {tuple(fa.shape)} differs from the DWI's {tuple(ref.shape[:3])}"
    if not np.allclose(fa.affine, ref.affine, atol=_AFFINE_ATOL):
        return "affine differs from the DWI's"
    return None


def _temporary_pattern(final: Path) -> re.Pattern[str]:
    # the names hcp_cam.io.atomic_path(s) and write_json_atomic give: .<stem>.<random>.tmp<suffixes>
    stem = re.escape(final.name.split(".")[0])
    return re.compile(rf"^\.{stem}\.[A-Za-z0-9_]+\.tmp(\.nii\.gz|\.json)$")


def remove_stale_temporaries(fa_path: PathLike, older_than: float = _STARTED) -> list[Path]:
    """Remove the hidden temporaries of one cache entry left by a run that was killed.

    Only names of this entry (``.<acquisition>_fa.<random>.tmp.nii.gz`` / ``.json``) whose
    modification time is before ``older_than`` (default: this process's start) are removed: a
    job writing the same entry right now keeps its file.

    Returns:
        The removed files.
    """
    fa_path = Path(fa_path)
    if not fa_path.parent.is_dir():
        return []
    pattern = _temporary_pattern(fa_path)
    removed = []
    for p in fa_path.parent.iterdir():
        if pattern.match(p.name) and p.is_file() and p.stat().st_mtime < older_than:
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        logger.info("removed %d temporary files of a killed run beside %s", len(removed), fa_path)
    return removed


def fa_for_acquisition(
    out_dir: PathLike,
    subject: str,
    acquisition: str,
    dwi: PathLike,
    bvals: PathLike,
    bvecs: PathLike,
    mask: PathLike | None,
    compute: Callable[[Path], object],
    backend: str = "torch",
) -> tuple[Path, bool]:
    """The cached FA of one acquisition, computed (with ``compute(path)``) unless a valid entry exists.

    Args:
        out_dir: cache root. subject, acquisition: names the entry.
        dwi, bvals, bvecs, mask: the source files (``mask`` may be None).
        compute: writes the FA map to the path it is given (e.g. :func:`hcp_cam.fa_maps.compute_fa_file`).
        backend: recorded in the stamp.

    Returns:
        ``(path, computed)``: the FA file, and whether it was computed now.
    """
    path = fa_cache_path(out_dir, subject, acquisition)
    remove_stale_temporaries(path)  # the FA's and the stamp's: both are .<acquisition>_fa.*.tmp.*
    sources = source_stamp(dwi, bvals, bvecs, mask)
    problem = cache_entry_problem(path, dwi, sources)
    if problem is None:
        return path, False
    if problem != "missing":
        logger.warning("FA cache entry %s cannot be reused (%s): computing it again", path, problem)
    compute(path)
    write_json_atomic(
        {"sources": sources, "backend": backend, "hcp_cam": __version__, "fa": path.name}, stamp_path(path)
    )
    return path, True
