"""Load a 4D diffusion-weighted NIfTI with its gradient table and brain mask as MONAI MetaTensors.

:class:`LoadDWI` and :class:`LoadDWId` are thin wrappers over
:func:`~hcp_cam.transforms.dwi_io.read_dwi`, which reads and checks the files without MONAI.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from .dwi_io import find_gradient_files, read_dwi
from .gradients import GradientTable

__all__ = ["LoadDWI", "LoadDWId", "find_gradient_files", "GRADIENT_META_KEYS"]

GRADIENT_META_KEYS = ("bvals", "bvecs", "shells", "b0_mask")
PathLike = str | os.PathLike


class LoadDWI(Transform):
    """Load a 4D DWI NIfTI, its gradient table and its mask.

    The image becomes channel-first ``(N, X, Y, Z)`` float32 with exactly the file's affine
    (nibabel, RAS+ world) in ``MetaTensor.affine``; the gradient table goes to ``meta["bvals"]``
    ``(N,)``, ``meta["bvecs"]`` ``(N, 3)`` (voxel frame, FSL convention), ``meta["shells"]``
    ``(N,)`` and ``meta["b0_mask"]`` ``(N,)``, all numpy arrays.

    Args:
        b0_threshold: b-values at or below it (s/mm^2) mark b0 volumes.
        shell_tolerance: b-values within it (s/mm^2) of a shell's lowest member join that shell.
    """

    def __init__(self, b0_threshold: float = 50.0, shell_tolerance: float = 100.0) -> None:
        self.b0_threshold = b0_threshold
        self.shell_tolerance = shell_tolerance

    def __call__(
        self,
        filename: PathLike,
        bvals: PathLike | None = None,
        bvecs: PathLike | None = None,
        mask: PathLike | None = None,
    ) -> tuple[MetaTensor, MetaTensor]:
        """Load one acquisition.

        Args:
            filename: 4D ``.nii``/``.nii.gz`` DWI.
            bvals: FSL b-values file; with ``bvecs`` None, found beside ``filename``.
            bvecs: FSL directions file (3 x N or N x 3).
            mask: 3D brain mask on the DWI's grid (nonzero = brain); None keeps every voxel.

        Returns:
            ``(dwi, mask)``: ``MetaTensor (N, X, Y, Z)`` float32 and ``MetaTensor (1, X, Y, Z)``
            uint8 of 0/1, both with the DWI's affine.

        Raises:
            InputError: missing, corrupt or truncated file; an image that is not 4D; NaN/Inf in
                the data; a gradient table that fails
                :func:`~hcp_cam.transforms.gradients.read_gradients`; a mask whose shape or affine
                differs from the DWI's, or an empty mask.
        """
        vol = read_dwi(filename, bvals, bvecs, mask, self.b0_threshold, self.shell_tolerance)
        affine = torch.as_tensor(vol.affine)
        meta = {
            "filename_or_obj": str(filename),
            "original_affine": vol.affine.copy(),
            "spatial_shape": np.asarray(vol.data.shape[:3]),
            "original_channel_dim": -1,
            "bvals_file": str(vol.bvals_path),
            "bvecs_file": str(vol.bvecs_path),
            **_gradient_meta(vol.gradients),
        }
        # channel-first as a strided view: no second copy of a multi-GB DWI already in float32
        dwi = MetaTensor(torch.from_numpy(vol.data).permute(3, 0, 1, 2), affine=affine, meta=meta)
        mask_meta = {"filename_or_obj": None if mask is None else str(mask)}
        m = torch.from_numpy(vol.mask.astype(np.uint8)[None])
        return dwi, MetaTensor(m, affine=affine.clone(), meta=mask_meta)


def _gradient_meta(gtab: GradientTable) -> dict[str, np.ndarray]:
    return {
        "bvals": np.array(gtab.bvals),
        "bvecs": np.array(gtab.bvecs),
        "shells": np.array(gtab.shells),
        "b0_mask": np.array(gtab.b0_mask),
    }


class LoadDWId(MapTransform):
    """Dictionary version of :class:`LoadDWI`: file paths in, MetaTensors out.

    Reads ``d[key]`` (the DWI path), ``d[bvals_key]``/``d[bvecs_key]`` (optional: found beside
    the DWI when absent) and ``d[mask_key]`` (optional); writes ``d[key]`` ``(N, X, Y, Z)``
    float32 and ``d[mask_key]`` ``(1, X, Y, Z)`` uint8.

    Args:
        keys: the DWI key(s). With several keys the masks go to ``f"{key}_{mask_key}"``.
        bvals_key: key of the b-values path.
        bvecs_key: key of the directions path.
        mask_key: key of the mask path; the loaded mask replaces it.
        allow_missing_keys: skip DWI keys absent from the dictionary instead of raising.
        b0_threshold: see :class:`LoadDWI`.
        shell_tolerance: see :class:`LoadDWI`.
    """

    def __init__(
        self,
        keys: KeysCollection = "dwi",
        bvals_key: str = "bvals",
        bvecs_key: str = "bvecs",
        mask_key: str = "mask",
        allow_missing_keys: bool = False,
        b0_threshold: float = 50.0,
        shell_tolerance: float = 100.0,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadDWI(b0_threshold=b0_threshold, shell_tolerance=shell_tolerance)
        self.bvals_key, self.bvecs_key, self.mask_key = bvals_key, bvecs_key, mask_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        several = len(self.keys) > 1
        for key in self.key_iterator(d):
            mask_out = f"{key}_{self.mask_key}" if several else self.mask_key
            d[key], d[mask_out] = self.loader(
                d[key], bvals=d.get(self.bvals_key), bvecs=d.get(self.bvecs_key), mask=d.get(self.mask_key)
            )
        return d
