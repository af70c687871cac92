"""Read one diffusion acquisition from files: the functional layer under :class:`~hcp_cam.transforms.LoadDWI`.

Imports numpy and nibabel only (no torch, no MONAI), so that ``hcp-cam fa`` starts in about a second.
The DWI keeps the file's ``(X, Y, Z, N)`` layout in float32; :class:`~hcp_cam.transforms.LoadDWI`
views it channel-first as a ``MetaTensor`` without a copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from hcp_cam.errors import InputError
from hcp_cam.io import MASK_AFFINE_ATOL, load_nifti

from .gradients import GradientTable, read_gradients

__all__ = [
    "DWIVolume",
    "read_dwi",
    "read_mask",
    "find_gradient_files",
    "resolve_gradient_paths",
]

PathLike = str | os.PathLike


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def find_gradient_files(dwi_path: PathLike) -> tuple[Path, Path]:
    """Find the gradient files beside a DWI: ``<stem>.bval``/``.bvec`` (FSL) or ``bvals``/``bvecs`` (HCP).

    Args:
        dwi_path: the ``.nii``/``.nii.gz`` DWI file.

    Returns:
        ``(bvals_path, bvecs_path)``.

    Raises:
        InputError: neither pair exists; the message lists the names tried.
    """
    dwi_path = Path(dwi_path)
    stem = _stem(dwi_path)
    tried = []
    for bval_name, bvec_name in ((f"{stem}.bval", f"{stem}.bvec"), ("bvals", "bvecs")):
        bval, bvec = dwi_path.with_name(bval_name), dwi_path.with_name(bvec_name)
        tried.append(f"{bval_name}/{bvec_name}")
        if bval.exists() and bvec.exists():
            return bval, bvec
    raise InputError(f"no gradient files given and none found beside it (tried {', '.join(tried)})", dwi_path)


@dataclass
class DWIVolume:
    """One loaded acquisition.

    Attributes:
        data: ``(X, Y, Z, N)`` float32 signal, the file's layout (a view of nibabel's array when
            the file stores float32).
        mask: ``(X, Y, Z)`` bool brain mask (all True without a mask file).
        image: the DWI's NIfTI image (header: affine, sform/qform codes, voxel sizes).
        gradients: the checked :class:`~hcp_cam.transforms.gradients.GradientTable`.
        dwi_path, bvals_path, bvecs_path: the files read. mask_path: None without a mask.
    """

    data: np.ndarray
    mask: np.ndarray
    image: nib.Nifti1Image
    gradients: GradientTable
    dwi_path: Path
    bvals_path: Path
    bvecs_path: Path
    mask_path: Path | None

    @property
    def affine(self) -> np.ndarray:
        """``(4, 4)`` float64 voxel -> RAS+ mm, exactly the file's."""
        return np.asarray(self.image.affine, dtype=np.float64)


def resolve_gradient_paths(
    filename: PathLike, bvals: PathLike | None, bvecs: PathLike | None
) -> tuple[Path, Path]:
    """The gradient files of a DWI: both given, or both found beside it (:func:`find_gradient_files`).

    Raises:
        InputError: only one of the two given, or none given and none found.
    """
    if (bvals is None) != (bvecs is None):
        raise InputError("give both bvals and bvecs, or neither", filename)
    if bvals is None:
        return find_gradient_files(filename)
    return Path(bvals), Path(bvecs)


def read_mask(path: PathLike, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Read a 3D brain mask (nonzero = brain) that must lie on the grid ``(shape, affine)``.

    Args:
        path: ``.nii``/``.nii.gz``, 3D or 4D with one volume.
        shape: the spatial shape ``(X, Y, Z)`` it must have.
        affine: the ``(4, 4)`` affine it must have (within :data:`MASK_AFFINE_ATOL` mm).

    Returns:
        ``(X, Y, Z)`` bool.

    Raises:
        InputError: unreadable, another grid, or no nonzero voxel.
    """
    path = Path(path)
    mimg = load_nifti(path, ndim=(3, 4))
    m = np.asanyarray(mimg.dataobj)
    if m.ndim == 4 and m.shape[3] == 1:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise InputError(f"mask shape {m.shape} does not match the DWI's spatial shape {tuple(shape)}", path)
    if not np.allclose(mimg.affine, affine, atol=MASK_AFFINE_ATOL):
        raise InputError(
            f"mask affine differs from the DWI's (max difference {np.abs(mimg.affine - affine).max():.3g} mm)",
            path,
        )
    brain = m != 0
    if not brain.any():
        raise InputError("the brain mask is empty (expected nonzero brain voxels, found none)", path)
    return brain


def _header_only(path: Path) -> nib.Nifti1Image | None:
    """The image with its data left on disk (nibabel reads the header only), or None if unreadable."""
    if not path.is_file():
        return None
    try:
        return nib.load(str(path))
    except Exception:  # noqa: BLE001 - load_nifti then names the problem in its own words
        return None


def read_dwi(
    filename: PathLike,
    bvals: PathLike | None = None,
    bvecs: PathLike | None = None,
    mask: PathLike | None = None,
    b0_threshold: float = 50.0,
    shell_tolerance: float = 100.0,
) -> DWIVolume:
    """Read a 4D DWI, its FSL gradient files and its brain mask, all checked.

    Args:
        filename: 4D ``.nii``/``.nii.gz`` DWI.
        bvals: FSL b-values file; with ``bvecs`` None, found beside ``filename``.
        bvecs: FSL directions file (3 x N or N x 3).
        mask: 3D brain mask on the DWI's grid (nonzero = brain); None keeps every voxel.
        b0_threshold: b-values at or below it (s/mm^2) mark b0 volumes.
        shell_tolerance: b-values within it (s/mm^2) of a shell's lowest member join that shell.

    Returns:
        :class:`DWIVolume`; ``data`` ``(X, Y, Z, N)`` float32.

    Raises:
        InputError: missing, corrupt or truncated file; an image that is not 4D; NaN/Inf in the
            data; a gradient table that fails :func:`~hcp_cam.transforms.gradients.read_gradients`
            (the gradient files are checked before the image is decoded); a mask on another grid
            or an empty one. The message starts with the offending file.
    """
    filename = Path(filename)
    if not filename.exists():
        raise InputError("file not found", filename)
    bvals_p, bvecs_p = resolve_gradient_paths(filename, bvals, bvecs)
    # the header first: gradients and mask are checked before a multi-GB image is decoded
    header = _header_only(filename)
    if header is None or len(header.shape) != 4:
        header = load_nifti(filename, ndim=4)  # raises the file's own error
    shape, n_volumes = tuple(header.shape[:3]), int(header.shape[3])
    gtab = read_gradients(bvals_p, bvecs_p, n_volumes, b0_threshold, shell_tolerance)
    brain = np.ones(shape, dtype=bool) if mask is None else read_mask(mask, shape, header.affine)
    img = load_nifti(filename, ndim=4)
    data = np.asanyarray(img.dataobj).astype(np.float32, copy=False)
    return DWIVolume(
        data=data,
        mask=brain,
        image=img,
        gradients=gtab,
        dwi_path=filename,
        bvals_path=bvals_p,
        bvecs_path=bvecs_p,
        mask_path=None if mask is None else Path(mask),
    )
