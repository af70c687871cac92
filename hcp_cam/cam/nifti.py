"""CAM volumes as NIfTI files: min-max scaling over the brain and a writer that keeps the FA's geometry."""

from __future__ import annotations

import os
import warnings

import nibabel as nib
import numpy as np
import torch

from hcp_cam.errors import InputError
from hcp_cam.io import load_nifti, save_nifti_like

__all__ = ["normalise01", "write_cam_nifti"]


def normalise01(
    volume: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
) -> torch.Tensor:
    """Min-max scale a volume to [0, 1] over the brain; 0 outside it.

    Args:
        volume: ``(X, Y, Z)`` (or ``(1, X, Y, Z)``) map.
        mask: brain mask of the same shape (nonzero = brain); ``None`` uses every voxel.

    Returns:
        float32 tensor of the volume's shape: brain min -> 0, brain max -> 1; all 0 (with a warning)
        when the map is constant over the brain.
    """
    v = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume).to(
        torch.float32
    )
    m = (
        torch.ones_like(v, dtype=torch.bool)
        if mask is None
        else torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).reshape(
            v.shape
        )
        != 0
    )
    if not m.any():
        raise ValueError("normalise01: the mask is empty")
    lo, hi = v[m].min(), v[m].max()
    if hi <= lo:
        warnings.warn("normalise01: the map is constant over the brain; returning zeros", stacklevel=2)
        return torch.zeros_like(v)
    return torch.where(m, (v - lo) / (hi - lo), torch.zeros(())).clamp(0.0, 1.0)


def write_cam_nifti(
    volume: torch.Tensor | np.ndarray,
    fa_reference: str | os.PathLike | nib.Nifti1Image,
    out_path: str | os.PathLike,
    kind: str = "raw",
    class_name: str | None = None,
) -> str:
    """Write a CAM volume as float32 NIfTI with exactly the FA's affine and sform/qform.

    Args:
        volume: ``(X, Y, Z)`` or ``(1, X, Y, Z)`` map in the FA grid.
        fa_reference: the FA file (or image) whose geometry the output keeps.
        out_path: ``.nii`` or ``.nii.gz``, written atomically.
        kind: ``"raw"`` (CAM values as computed) or ``"normalised"`` (values in [0, 1] per volume,
            e.g. from :func:`normalise01`); stored in the header description, e.g.
            ``"CAM raw, class old"`` or ``"CAM [0,1] per volume"``.
        class_name: name of the class the map is for, added to the description.

    Returns:
        the output path.

    Raises:
        InputError: the reference cannot be read or its grid differs from the volume's.
        ValueError: unknown ``kind``, non-finite values, or ``"normalised"`` values outside [0, 1].
    """
    if kind not in ("raw", "normalised"):
        raise ValueError(f"kind must be 'raw' or 'normalised', got {kind!r}")
    ref = fa_reference if isinstance(fa_reference, nib.Nifti1Image) else load_nifti(fa_reference, ndim=3)
    data = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.shape != tuple(ref.shape[:3]):
        where = fa_reference if not isinstance(fa_reference, nib.Nifti1Image) else ref.get_filename()
        raise InputError(
            f"CAM volume shape {data.shape} differs from the FA grid {tuple(ref.shape[:3])}", where
        )
    if not np.isfinite(data).all():
        raise ValueError(f"{out_path}: CAM volume holds NaN or Inf")
    if kind == "normalised" and (data.min() < 0 or data.max() > 1):
        raise ValueError(f"{out_path}: kind='normalised' but values span [{data.min()}, {data.max()}]")
    if not data.any():
        warnings.warn(f"{out_path}: the CAM volume is all zero (written anyway)", stacklevel=2)
    desc = "CAM raw" if kind == "raw" else "CAM [0,1] per volume"
    if class_name is not None:
        desc += f", class {class_name}"
    return str(save_nifti_like(data.astype(np.float32), ref, out_path, description=desc))
