"""An FA map loaded with its brain mask: the one loader of every reader of FA maps.

Training (:mod:`hcp_cam.training.data`), CAM (:mod:`hcp_cam.cam.pipeline`, :mod:`hcp_cam.cam.single`)
and the sanity checks (:mod:`hcp_cam.cam.sanity`) read an FA map and its mask through
:func:`load_fa_with_mask`, so that they agree on what the brain is and on which grids match.
Imports numpy and nibabel only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from hcp_cam.errors import InputError
from hcp_cam.io import MASK_AFFINE_ATOL, load_nifti

__all__ = ["FAVolume", "load_fa_with_mask"]


@dataclass(frozen=True)
class FAVolume:
    """An FA map with its brain mask, on one grid.

    Attributes:
        fa: ``(X, Y, Z)`` float32.
        mask: ``(X, Y, Z)`` bool, from the mask file (nonzero = brain) or ``fa > 0`` without one.
        image: the FA's NIfTI image (its header carries affine, sform/qform codes, voxel sizes).
        fa_path: the FA file. mask_path: the mask file, or None.
    """

    fa: np.ndarray
    mask: np.ndarray
    image: nib.Nifti1Image
    fa_path: Path
    mask_path: Path | None

    @property
    def affine(self) -> np.ndarray:
        """``(4, 4)`` float64 voxel -> RAS+ mm of the FA file."""
        return np.asarray(self.image.affine, dtype=np.float64)


def load_fa_with_mask(
    fa_path: str | os.PathLike, mask_path: str | os.PathLike | None = None, allow_empty: bool = False
) -> FAVolume:
    """Load an FA map and its brain mask, the mask checked to lie on the FA's grid.

    Args:
        fa_path: 3D ``.nii``/``.nii.gz`` FA map.
        mask_path: 3D brain mask (nonzero = brain); None takes the voxels where FA > 0 (the fit
            leaves the background at 0).
        allow_empty: accept a mask without any brain voxel.

    Returns:
        :class:`FAVolume`.

    Raises:
        InputError: unreadable or not 3D (see :func:`load_nifti`), a mask of another shape or
            affine than the FA's, or no brain voxel; the message names the file.
    """
    fa_path = Path(fa_path)
    img = load_nifti(fa_path, ndim=3)
    fa = np.asarray(img.dataobj, dtype=np.float32)
    if mask_path is None:
        mask = fa > 0
        if not mask.any() and not allow_empty:
            raise InputError(
                "the FA map has no positive voxel: no brain (give a mask, or check the file)", fa_path
            )
    else:
        mask_path = Path(mask_path)
        mimg = load_nifti(mask_path, ndim=3)
        if mimg.shape != img.shape:
            raise InputError(
                f"mask grid {mimg.shape} differs from the FA grid {img.shape} of {fa_path}", mask_path
            )
        if not np.allclose(mimg.affine, img.affine, atol=MASK_AFFINE_ATOL):
            diff = float(np.abs(mimg.affine - img.affine).max())
            raise InputError(f"mask affine differs from the affine of {fa_path} by {diff:.3g} mm", mask_path)
        mask = np.asarray(mimg.dataobj) != 0
        if not mask.any() and not allow_empty:
            raise InputError("the brain mask is empty (no nonzero voxel)", mask_path)
    return FAVolume(fa=fa, mask=mask, image=img, fa_path=fa_path, mask_path=mask_path)
