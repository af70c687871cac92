"""Images between nibabel (RAS) and SimpleITK (LPS) without leaving the voxel grid.

nibabel gives an array ``(X, Y, Z)`` and a RAS voxel-to-world affine; SimpleITK gives an image of
``(x, y, z)`` size with origin, spacing and direction in LPS, and ``GetArrayFromImage`` returns
``(Z, Y, X)``. The two agree after ``diag(-1, -1, 1)`` for rigid affines (docs: environment notes);
a sheared affine has no SimpleITK equivalent, so it is refused here rather than silently approximated.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from hcp_cam.errors import InputError

__all__ = [
    "LPS",
    "check_rigid_affine",
    "to_sitk",
    "array_from_sitk",
    "ras_to_lps",
    "lps_to_ras",
    "affine_from_sitk_transform",
    "same_grid",
    "file_digest",
]

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS for points and for 4x4 transforms


def check_rigid_affine(affine: np.ndarray, path: str | os.PathLike | None = None, tol: float = 1e-4) -> None:
    """Refuse an affine whose columns are not orthogonal (shear): SimpleITK cannot represent it.

    Raises:
        InputError: the affine is sheared or singular (names ``path``).
    """
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    if np.any(spacing <= 0):
        raise InputError("singular affine (a zero voxel size)", path)
    direction = lin / spacing
    err = float(np.abs(direction.T @ direction - np.eye(3)).max())
    if err > tol:
        raise InputError(
            f"the affine is sheared (direction columns not orthogonal, error {err:.2g}); SimpleITK reads only "
            "rigid grids: resample the image to a rigid grid first",
            path,
        )


def to_sitk(data: np.ndarray, affine: np.ndarray, path: str | os.PathLike | None = None) -> sitk.Image:
    """A SimpleITK image with the same voxels and world positions as ``(data, affine)``.

    Args:
        data: ``(X, Y, Z)`` array in nibabel's order; cast to float32 unless it is an integer label
            image (kept as its integer type).
        affine: ``(4, 4)`` RAS voxel-to-world affine (rigid).
        path: the file it came from, for error messages.

    Returns:
        an image whose voxel ``(i, j, k)`` holds ``data[i, j, k]`` at the same world point (in LPS).
    """
    check_rigid_affine(affine, path)
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise InputError(f"expected a 3D image, got shape {arr.shape}", path)
    if not np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32, copy=False)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    lps = LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in (lps[:3, :3] / spacing).ravel()))
    img.SetOrigin(tuple(float(v) for v in lps[:3, 3]))
    return img


def array_from_sitk(img: sitk.Image) -> np.ndarray:
    """``(X, Y, Z)`` array of a SimpleITK image (the inverse of :func:`to_sitk` for the voxels)."""
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0)


def ras_to_lps(matrix: np.ndarray) -> np.ndarray:
    """A ``(4, 4)`` point transform in RAS mm -> the same transform in LPS mm."""
    return LPS @ np.asarray(matrix, dtype=np.float64) @ LPS


def lps_to_ras(matrix: np.ndarray) -> np.ndarray:
    """A ``(4, 4)`` point transform in LPS mm -> the same transform in RAS mm."""
    return LPS @ np.asarray(matrix, dtype=np.float64) @ LPS


def affine_from_sitk_transform(transform: sitk.Transform) -> np.ndarray:
    """The ``(4, 4)`` RAS matrix of a SimpleITK affine-like transform (Euler, similarity, affine).

    SimpleITK maps ``p -> A (p - c) + c + t``; as a matrix ``[[A, c + t - A c], [0, 1]]`` in LPS.

    Raises:
        TypeError: the transform is not linear (a B-spline or a displacement field).
    """
    tx = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if not hasattr(tx, "GetMatrix"):
        raise TypeError(f"{tx.GetName()} is not a linear transform")
    a = np.asarray(tx.GetMatrix(), dtype=np.float64).reshape(3, 3)
    c = np.asarray(tx.GetCenter(), dtype=np.float64)
    t = np.asarray(tx.GetTranslation(), dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = a
    out[:3, 3] = c + t - a @ c
    return lps_to_ras(out)


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image, tol: float = 1e-3) -> bool:
    """Whether two images share shape and affine (to ``tol`` mm)."""
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and bool(np.allclose(a.affine, b.affine, atol=tol))


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (a cached transform is valid only for the images it was made from)."""
    h = hashlib.sha256()
    with open(Path(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
