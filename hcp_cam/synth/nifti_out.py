"""NIfTI files of the synthetic data: headers with the affine as sform and qform, 4D DWI streamed.

Every file goes through :func:`hcp_cam.io.atomic_path`; the gzip stream has no time stamp, so the
same data give the same bytes.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from hcp_cam.errors import InputError
from hcp_cam.io import atomic_path

__all__ = ["nifti_header", "reference_image", "write_dwi_nifti"]

_TR_S = 5.52  # HCP's diffusion repetition time, stored as the 4th zoom


def nifti_header(shape: Sequence[int], affine: np.ndarray, dtype: type | np.dtype) -> nib.Nifti1Header:
    """A NIfTI header with the affine as sform and qform (code 1, scanner) and mm/s units."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(tuple(int(s) for s in shape))
    hdr.set_data_dtype(dtype)
    hdr.set_sform(affine, code=1)
    hdr.set_qform(affine, code=1)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    hdr.set_zooms((*zooms, _TR_S)[: len(shape)])
    hdr.set_xyzt_units("mm", "sec")
    return hdr


def reference_image(shape: Sequence[int], affine: np.ndarray) -> nib.Nifti1Image:
    """A data-free 3D image whose geometry ``save_nifti_like`` copies."""
    hdr = nifti_header(shape[:3], affine, np.float32)
    return nib.Nifti1Image(np.broadcast_to(np.float32(0), tuple(shape[:3])), affine, hdr)


def write_dwi_nifti(
    path: str | os.PathLike,
    volumes: Iterable[np.ndarray],
    shape: Sequence[int],
    n_volumes: int,
    affine: np.ndarray,
    dtype: type | np.dtype = np.float32,
    description: str = "",
) -> Path:
    """Stream 3D volumes into a 4D ``.nii.gz`` of shape ``(X, Y, Z, N)``, atomically.

    NIfTI stores the 4th axis slowest, so volume ``k`` is one contiguous block: only one volume is
    in memory at a time. The gzip stream has no time stamp (same data, same bytes).

    Args:
        path: output ``.nii.gz``.
        volumes: ``n_volumes`` arrays of shape ``(X, Y, Z)``; cast to ``dtype`` (ints rounded and
            clipped to the type's range).
        shape: ``(X, Y, Z)``.
        n_volumes: N.
        affine: ``(4, 4)`` rigid affine, written as sform and qform.
        dtype: stored type (float32 for preprocessed data, int16 for scanner-like raw data).
        description: header ``descrip`` (80 bytes at most).

    Raises:
        InputError: a volume has the wrong shape or there are not exactly ``n_volumes``.
    """
    hdr = nifti_header((*shape, n_volumes), affine, dtype)
    hdr["descrip"] = description[:79].encode()
    out_dtype = hdr.get_data_dtype()
    limits = np.iinfo(out_dtype) if np.issubdtype(out_dtype, np.integer) else None
    count = 0
    with atomic_path(path) as tmp:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as gz,
        ):
            hdr.write_to(gz)
            for vol in volumes:
                vol = np.asarray(vol)
                if vol.shape != tuple(shape):
                    raise InputError(f"volume {count} has shape {vol.shape}, expected {tuple(shape)}", path)
                if limits is not None:
                    vol = np.clip(np.rint(vol), limits.min, limits.max)
                gz.write(vol.astype(out_dtype).tobytes(order="F"))
                count += 1
        if count != n_volumes:
            raise InputError(f"got {count} volumes, expected {n_volumes}", path)
    return Path(path)
