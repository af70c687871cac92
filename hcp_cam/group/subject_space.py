"""Template-space results back in a subject's own grid, through the inverse of its registration."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from hcp_cam.errors import InputError
from hcp_cam.group.images import same_grid, to_sitk
from hcp_cam.group.registration import load_registration
from hcp_cam.group.warping import inverse_transform, resample
from hcp_cam.io import load_nifti, save_nifti_like

__all__ = ["to_subject"]


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def to_subject(
    out_dir: str | os.PathLike,
    key: str,
    image: str | os.PathLike,
    dest: str | os.PathLike | None = None,
) -> Path:
    """Write a template-space image (a group map, an atlas) on one subject's FA grid.

    Args:
        out_dir: the group analysis folder (``template.nii.gz`` and ``transforms/``).
        key: the subject's key (``<subject>`` or ``<subject>_<acquisition>``, as in ``transforms/``).
        image: a 3D NIfTI on the template's grid. Integer images (labels) are resampled with nearest
            neighbour, others linearly over their finite voxels (NaN stays NaN).
        dest: the output file; default ``OUT/to_subject/<key>_<image stem>.nii.gz``.

    Returns:
        the path written: the subject FA's geometry (affine, sform and qform).

    Raises:
        InputError: no transform for ``key``, a transform made against another template, the
            subject's FA gone, or an image that is not on the template's grid.
    """
    out = Path(out_dir)
    found = load_registration(out / "transforms", key)
    if found is None:
        raise InputError(f"no registration of {key!r} (transforms/{key}.json): run hcp-cam group first", out)
    reg, record = found
    template_path = out / "template.nii.gz"
    template = load_nifti(template_path, ndim=3)
    try:
        recorded = json.loads((out / "template.json").read_text()).get("sha256")
    except (OSError, json.JSONDecodeError):
        recorded = None
    if recorded is not None and record.get("template_sha256") != recorded:
        raise InputError(
            f"the transform of {key!r} was made against another template than {template_path}", out
        )
    fa_path = Path(str(record.get("fa", "")))
    fa = load_nifti(fa_path, ndim=3)
    img = nib.load(str(image))
    if img.ndim != 3:
        raise InputError(f"expected a 3D image, got shape {img.shape}", image)
    if not same_grid(img, template):
        raise InputError(
            f"not on the template's grid (shape {img.shape}, template {template.shape}): give a map of this group analysis",
            image,
        )
    data = np.asanyarray(img.dataobj)
    fixed = to_sitk(np.asarray(template.dataobj, dtype=np.float32), template.affine)
    inverse = inverse_transform(reg.transform, fixed)
    reference = to_sitk(np.zeros(fa.shape, np.float32), fa.affine)
    if np.issubdtype(data.dtype, np.integer):
        moved, dtype = resample(data, img.affine, reference, inverse, "nearest"), data.dtype
    else:
        values = data.astype(np.float32)
        moved, dtype = (
            resample(values, img.affine, reference, inverse, "cam", known=np.isfinite(values)),
            np.float32,
        )
    dest = Path(dest) if dest is not None else out / "to_subject" / f"{key}_{_stem(Path(image))}.nii.gz"
    return save_nifti_like(moved, fa, dest, f"{_stem(Path(image))} in {key}'s grid", dtype)
