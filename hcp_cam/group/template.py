"""The common space: a given FA template, or one built from the cohort's FA maps.

A given template is any FA-like 3D NIfTI (a lab's FMRIB58_FA, the generator's ``template_fa.nii.gz``).
A study template is built as in TBSS's "most representative subject" and ANTs' template scripts,
simplified: start from one subject's FA, register every FA to it (affine), average the warped maps,
and register again to the average, ``iterations`` times. The template keeps the grid and affine of
the subject it started from (the first in sorted order), so its world coordinates are that subject's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from tqdm import tqdm

from hcp_cam.errors import InputError
from hcp_cam.group.images import check_rigid_affine, to_sitk
from hcp_cam.group.registration import RegistrationSettings, register
from hcp_cam.group.warping import resample
from hcp_cam.io import load_nifti

__all__ = ["load_template", "template_mask", "build_template"]

logger = logging.getLogger(__name__)


def load_template(path: str | os.PathLike) -> nib.Nifti1Image:
    """Read a template: a 3D, rigid-affine, finite image with some positive voxels.

    Raises:
        InputError: not 3D (e.g. a 4D file), sheared affine, NaN/Inf, or nothing above 0.
    """
    img = load_nifti(path, ndim=3)
    check_rigid_affine(img.affine, path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not (data > 0).any():
        raise InputError("the template has no voxel above 0 (expected an FA-like image)", path)
    return nib.Nifti1Image(data, img.affine, img.header)


def template_mask(template: np.ndarray) -> np.ndarray:
    """The template's brain: voxels above 0 (FA templates are 0 outside the brain)."""
    return np.asarray(template) > 0


def build_template(
    fa_images: Sequence[nib.Nifti1Image],
    settings: RegistrationSettings | None = None,
    iterations: int = 2,
    progress: bool = True,
) -> tuple[nib.Nifti1Image, dict]:
    """Build a study-specific FA template from the cohort.

    Args:
        fa_images: every subject's FA (one per subject), any grids with rigid affines; the first is
            the starting reference.
        settings: registration settings (the deformable stage, if any, is used in the last round only).
        iterations: rounds of register-and-average after the first average.
        progress: a tqdm bar per round.

    Returns:
        ``(template, info)``: float32 image on the first subject's grid (0 outside the voxels every
        subject covers at least half the time), and what was done.

    Raises:
        InputError: fewer than two images.
    """
    if len(fa_images) < 2:
        raise InputError(f"a study template needs at least 2 FA maps, got {len(fa_images)}")
    settings = settings or RegistrationSettings()
    linear = dataclasses.replace(settings, deformable=None)
    ref = fa_images[0]
    current = np.asarray(ref.dataobj, dtype=np.float32)
    rounds = []
    for k in range(int(iterations) + 1):
        fixed = to_sitk(current, ref.affine)
        round_settings = settings if k == iterations else linear
        warped = []
        for img in tqdm(
            fa_images, desc=f"template round {k + 1}/{iterations + 1}", unit="subject", disable=not progress
        ):
            data = np.asarray(img.dataobj, dtype=np.float32)
            reg = register(fixed, to_sitk(data, img.affine), round_settings)
            warped.append(resample(data, img.affine, fixed, reg.transform, "linear"))
        stack = np.stack(warped)
        covered = np.isfinite(stack).mean(axis=0) >= 0.5
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(np.isfinite(stack), stack, np.nan), axis=0)
        new = np.where(covered & np.isfinite(mean), mean, 0.0).astype(np.float32)
        change = float(np.abs(new - current).mean())
        rounds.append({"round": k + 1, "mean_abs_change": change})
        logger.info("template round %d: mean |change| %.4f", k + 1, change)
        current = new
    header = ref.header.copy()
    header.set_data_dtype(np.float32)
    template = nib.Nifti1Image(current, ref.affine, header)
    info = {"reference_grid_from": "the first subject", "rounds": rounds, "settings": settings.to_dict()}
    return template, info
