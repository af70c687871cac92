"""Maps between a subject's grid and the template's, with SimpleITK's ``Resample``.

Three kinds of image: continuous maps (FA; linear interpolation), label images (nearest neighbour)
and maps with unknown voxels (CAM: a voxel on no computed slice is unknown). Unknown voxels stay
unknown: the known part and the indicator of what is known are warped separately (normalised
interpolation), and a template voxel is known where more than half of its interpolation weight came
from known voxels; it is NaN otherwise, never 0. Points outside the subject's grid are NaN as well.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from hcp_cam.group.images import array_from_sitk, to_sitk

__all__ = [
    "KINDS",
    "known_cam_voxels",
    "resample",
    "inverse_transform",
]

KINDS = ("linear", "nearest", "cam")


def known_cam_voxels(cam: np.ndarray) -> np.ndarray:
    """Which voxels of a CAM volume hold a value.

    ``hcp_cam.cam`` writes 0 where a voxel lies on no computed slice (and outside the brain), so a
    voxel is known where it is finite and not exactly 0; NaN (how this package writes unknown
    voxels) is unknown too. A raw CAM is a weighted sum of feature maps upsampled and averaged over
    three axes: an exact 0 inside the known block does not occur in practice.
    """
    cam = np.asarray(cam)
    return np.isfinite(cam) & (cam != 0)


def resample(
    data: np.ndarray,
    affine: np.ndarray,
    reference: sitk.Image,
    transform: sitk.Transform,
    kind: str = "linear",
    known: np.ndarray | None = None,
) -> np.ndarray:
    """Bring ``(data, affine)`` onto ``reference``'s grid through ``transform``.

    Args:
        data: ``(X, Y, Z)`` array on its own grid.
        affine: its RAS affine.
        reference: the output grid (a SimpleITK image, e.g. the template).
        transform: maps reference points to ``data`` points (LPS mm), as ``sitk.Resample`` takes it.
        kind: ``"linear"`` (NaN outside ``data``'s grid), ``"nearest"`` (labels; 0 outside) or
            ``"cam"`` (linear over the known voxels; NaN where unknown).
        known: for ``"cam"``, the known voxels (default :func:`known_cam_voxels`).

    Returns:
        ``(X', Y', Z')`` array on the reference grid: float32, or ``data``'s integer type for
        ``"nearest"``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "nearest":
        labels = np.asarray(data)
        if not np.issubdtype(labels.dtype, np.integer):
            labels = np.rint(labels).astype(np.int32)
        out = sitk.Resample(to_sitk(labels, affine), reference, transform, sitk.sitkNearestNeighbor, 0)
        return array_from_sitk(out).astype(labels.dtype, copy=False)
    values = np.asarray(data, dtype=np.float32)
    if kind == "linear":
        out = sitk.Resample(
            to_sitk(values, affine), reference, transform, sitk.sitkLinear, np.nan, sitk.sitkFloat32
        )
        return array_from_sitk(out).astype(np.float32, copy=False)
    mask = known_cam_voxels(values) if known is None else np.asarray(known, dtype=bool)
    filled = np.where(mask, values, 0.0).astype(np.float32)
    num = sitk.Resample(to_sitk(filled, affine), reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    den = sitk.Resample(
        to_sitk(mask.astype(np.float32), affine), reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    num_a, den_a = array_from_sitk(num), array_from_sitk(den)
    ok = den_a > 0.5
    out = np.full(num_a.shape, np.nan, dtype=np.float32)
    out[ok] = num_a[ok] / den_a[ok]
    return out


def inverse_transform(transform: sitk.Transform, template: sitk.Image) -> sitk.Transform:
    """Subject points -> template points: the inverse of a registration's transform.

    Linear transforms are inverted exactly. A composite (affine after a B-spline or displacement field
    on the template grid) is inverted as ``deformable^-1`` after ``affine^-1``; the deformable part's
    inverse is a displacement field on the template grid (``sitk.InvertDisplacementField``).
    """
    tx = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if not isinstance(tx, sitk.CompositeTransform):
        return tx.GetInverse()
    parts = [tx.GetNthTransform(i) for i in range(tx.GetNumberOfTransforms())]
    affine, deformable = parts[0], parts[1:]
    inverse = sitk.CompositeTransform(3)
    for part in deformable[::-1]:
        field = sitk.TransformToDisplacementField(
            part,
            sitk.sitkVectorFloat64,
            template.GetSize(),
            template.GetOrigin(),
            template.GetSpacing(),
            template.GetDirection(),
        )
        inv = sitk.InvertDisplacementField(field, maximumNumberOfIterations=20, enforceBoundaryCondition=True)
        inverse.AddTransform(sitk.DisplacementFieldTransform(inv))
    inverse.AddTransform(affine.GetInverse())  # applied first
    return inverse
