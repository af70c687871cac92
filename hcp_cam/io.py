"""File helpers shared by every writer: atomic writes and NIfTI geometry kept from a reference.

Every output is written to a temporary name in the destination folder and renamed when complete,
so a crash or a bad input never leaves a half-written file under the final name; a call that
writes several files renames them together (:func:`atomic_paths`). Outputs are checked before the
work that makes them (:func:`check_output_path`, :func:`check_not_inputs`). Imports numpy and
nibabel only.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from hcp_cam.errors import InputError

__all__ = [
    "atomic_path",
    "atomic_paths",
    "check_output_path",
    "check_not_inputs",
    "write_json_atomic",
    "load_nifti",
    "MASK_AFFINE_ATOL",
    "nifti_like",
    "save_nifti_like",
    "NIFTI_SUFFIXES",
    "recorded_path",
]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MASK_AFFINE_ATOL = 1e-3  # mm: a mask on its image's grid (headers store float32)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``, ``.png``) so that writers that
    choose a format by extension still work. On any exception the temporary file is removed. The file
    gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask, or those of
    the file it replaces), not ``mkstemp``'s owner-only ``0o600``: results are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if path.suffixes else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _mode_for(path))
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Like :func:`atomic_path` for several files written all or none.

    Yields one temporary path beside each of ``paths`` (same suffixes); when the block succeeds
    they are renamed to their final names one after the other, else every temporary is removed,
    and so is every folder this call created. Should a rename fail (it is one ``os.replace`` in
    the same folder), the final files it had made so far are removed again.
    """
    finals = [Path(p) for p in paths]
    created: list[Path] = []
    tmps: list[Path] = []
    renamed: list[Path] = []
    try:
        for path in finals:
            missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            created.extend(reversed(missing))  # deepest last, removed first below
            suffix = "".join(path.suffixes)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent
            )
            os.close(fd)
            tmps.append(Path(tmp))
        yield list(tmps)
        modes = [_mode_for(p) for p in finals]
        for tmp, path, mode in zip(tmps, finals, modes, strict=True):
            os.chmod(tmp, mode)
            existed = path.exists()
            os.replace(tmp, path)
            if not existed:
                renamed.append(path)
    except BaseException:
        for path in renamed:
            path.unlink(missing_ok=True)
        for d in reversed(created):
            with contextlib.suppress(OSError):
                for tmp in tmps:
                    if tmp.parent == d:
                        tmp.unlink(missing_ok=True)
                d.rmdir()
        raise
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def check_output_path(
    path: str | os.PathLike, what: str = "output", suffixes: Sequence[str] | None = NIFTI_SUFFIXES
) -> Path:
    """Check, before any work, that a file can be written at ``path``.

    Args:
        path: the file to be written (its folders may not exist yet).
        what: how the message names it ("output", "FA output", ...).
        suffixes: the endings it must have (NIfTI by default); None accepts any name.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        InputError: a wrong extension, a folder at ``path``, a file where a folder must be
            created, or a destination folder that refuses a test file (read-only, no permission).
            Nothing is left behind by the check.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"{what} is a folder; expected a file name ending in {' or '.join(suffixes or ('a name',))}", path
        )
    if suffixes and not any(path.name.endswith(s) for s in suffixes):
        raise InputError(f"{what} must end in {' or '.join(suffixes)}, found {path.name!r}", path)
    if path.exists() and not path.is_file():
        raise InputError(f"{what} exists and is not a regular file", path)
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"cannot create the {what}'s folder: {folder} is a file", path)
    try:  # a real probe: permission bits say nothing about root, read-only mounts or immutable folders
        if folder == Path(os.path.abspath(path)).parent:
            fd, probe = tempfile.mkstemp(prefix=".hcp-cam-probe.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".hcp-cam-probe.", dir=folder))
    except OSError as e:
        raise InputError(
            f"cannot write the {what}: folder {folder} is not writable ({e.strerror or e})", path
        ) from e
    return path


def check_not_inputs(
    outputs: Sequence[str | os.PathLike], inputs: Mapping[str, str | os.PathLike | None]
) -> None:
    """Refuse any output that is one of the inputs (resolved paths: links and ``..`` see through).

    Args:
        outputs: the files a call will write.
        inputs: kind -> input file (``{"DWI": ..., "mask": ...}``); None entries are skipped.

    Raises:
        InputError: naming the output and the input it would overwrite.
    """
    resolved = {Path(p).resolve(): kind for kind, p in inputs.items() if p is not None}
    for out in outputs:
        kind = resolved.get(Path(out).resolve())
        if kind is not None:
            raise InputError(f"output would overwrite the input {kind}; choose another output name", out)


def _current_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any writer thread runs
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _mode_for(path: Path) -> int:
    """Permission bits for a new file at ``path``: those of the file it replaces, else 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def write_json_atomic(obj: Any, path: str | os.PathLike, indent: int = 4) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, default=_json_default) + "\n")
    return Path(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_nifti(
    path: str | os.PathLike, ndim: int | tuple[int, ...] | None = None, finite: bool = True
) -> nib.Nifti1Image:
    """Load a NIfTI image and read its data once, turning every failure into an :class:`InputError`.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        ndim: the allowed number of dimensions (3, 4 or a tuple of them); ``None`` accepts any.
        finite: refuse NaN/Inf; ``False`` for maps where NaN means unknown (the group maps).

    Raises:
        InputError: the file is missing, is not NIfTI, is truncated or corrupt, has the wrong
            number of dimensions, or holds NaN/Inf (with ``finite``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("expected a NIfTI file, found a folder", path)
    loaded = _load_gz_fast(path) if path.name.endswith(".nii.gz") else None
    try:
        img, data = loaded if loaded is not None else _load_nibabel(path)
    except (
        OSError,
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        nib.filebasedimages.ImageFileError,
        ValueError,
    ) as e:
        raise InputError(f"cannot read as NIfTI (corrupt or truncated?): {e}", path) from e
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if data.ndim not in allowed:
            want = " or ".join(f"{d}D" for d in allowed)
            raise InputError(f"expected a {want} image, got a {data.ndim}D image of shape {data.shape}", path)
    if finite and np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise InputError(f"holds {n_bad} NaN or Inf values", path)
    # keep the decoded array so callers do not decompress twice
    return nib.Nifti1Image(data, img.affine, img.header)


_NIFTI1_SIZEOF_HDR = (np.int32(348).astype("<i4").tobytes(), np.int32(348).astype(">i4").tobytes())


def _load_nibabel(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    img = nib.load(str(path))
    return img, np.asanyarray(img.dataobj)


def _fast_gzip_open() -> Callable[..., Any] | None:
    """``open`` of the fastest installed gzip decoder (ISA-L, then zlib-ng), or None.

    Both decode a DWI ``.nii.gz`` ~1.4x faster than the standard library's zlib
    (docs/performance.md). ``isal`` is a dependency of hcp-cam (a wheel on every platform PyPI
    serves); ``zlib-ng`` is taken when installed. This is the project's equivalent of MONAI's
    ``optional_import``, which ``hcp-cam fa`` cannot use without importing MONAI: an optional module
    is tried by name and its absence falls back to the standard library, never an error.
    """
    for module in ("isal.igzip", "zlib_ng.gzip_ng"):
        try:
            return importlib.import_module(module).open
        except ImportError:
            continue
    return None


def _load_gz_fast(path: Path) -> tuple[nib.Nifti1Image, np.ndarray] | None:
    """Decode a ``.nii.gz`` through a fast gzip decoder; None when none is installed or it fails.

    nibabel reads the header and then the whole array with one ``readinto`` into a buffer it
    allocates (the decompressed data exists once; scaling is nibabel's own). Any failure returns
    None, so that the standard path gives its usual error (and accepts what it accepted before).
    """
    gz_open = _fast_gzip_open()
    if gz_open is None:
        return None
    try:
        with gz_open(str(path), "rb") as fh:
            if fh.read(4) not in _NIFTI1_SIZEOF_HDR:  # NIfTI-2 and others: nibabel's own path
                return None
            fh.seek(0)
            holder = nib.FileHolder(filename=str(path), fileobj=fh)
            img = nib.Nifti1Image.from_file_map({"image": holder, "header": holder})
            if img.header["magic"].item() != b"n+1":  # header and data in one file only
                return None
            return img, np.asanyarray(img.dataobj)
    except Exception:  # noqa: BLE001 - a pure speed-up: the reference path decides what is an error
        return None


def nifti_like(
    data: np.ndarray,
    reference: nib.Nifti1Image,
    description: str = "",
    dtype: np.dtype | type = np.float32,
    where: str | os.PathLike | None = None,
) -> nib.Nifti1Image:
    """An image of ``data`` with exactly the affine, sform/qform codes and voxel sizes of ``reference``.

    Args:
        data: array whose first three dimensions equal the reference's spatial shape.
        reference: the image whose geometry the output keeps (the FA map, the DWI).
        description: stored in the header's ``descrip`` field (80 bytes at most), e.g. the units.
        dtype: output data type (float32 by default).
        where: the file it is meant for, named in the error.

    Raises:
        InputError: ``data`` is not on the reference's grid.
    """
    data = np.asarray(data)
    if data.shape[:3] != reference.shape[:3]:
        raise InputError(
            f"data shape {data.shape} does not match the reference grid {reference.shape[:3]}", where
        )
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    header.set_data_shape(data.shape)
    out = nib.Nifti1Image(data.astype(dtype, copy=False), reference.affine, header)
    sform, scode = reference.header.get_sform(coded=True)
    qform, qcode = reference.header.get_qform(coded=True)
    out.set_sform(reference.affine if sform is None else sform, int(scode) if scode else 1)
    out.set_qform(reference.affine if qform is None else qform, int(qcode) if qcode else 1)
    out.header["descrip"] = description[:79].encode()
    out.header["scl_slope"] = 1.0
    out.header["scl_inter"] = 0.0
    return out


def save_nifti_like(
    data: np.ndarray,
    reference: nib.Nifti1Image,
    path: str | os.PathLike,
    description: str = "",
    dtype: np.dtype | type = np.float32,
) -> Path:
    """Write ``data`` with exactly the geometry of ``reference`` (:func:`nifti_like`), atomically.

    Args:
        data: array whose first three dimensions equal the reference's spatial shape.
        reference: the image whose geometry the output keeps (the FA map, the DWI).
        path: output file; written under a temporary name, renamed when complete.
        description: stored in the header's ``descrip`` field (80 bytes at most), e.g. the units.
        dtype: output data type (float32 by default).
    """
    out = nifti_like(data, reference, description, dtype, where=path)
    with atomic_path(path) as tmp:
        nib.save(out, str(tmp))
    return Path(path)


def recorded_path(value: str | os.PathLike, run_dir: str | os.PathLike) -> Path:
    """A file path recorded in a run folder's tables (e.g. ``cam/summary.csv``'s ``fa``).

    Absolute paths are returned as written. A relative one is tried from the run folder, then from
    the current folder (runs made before paths were recorded absolute wrote a relative
    ``cache_dir`` as given, relative to where the bundle ran); the run-folder path is returned when
    neither exists, for the caller's error message.
    """
    path = Path(value)
    if path.is_absolute():
        return path
    in_run = Path(run_dir) / path
    return path if not in_run.exists() and path.exists() else in_run
