"""Is this image an FA map? A plausibility check of the values, before a network reads them.

A network trained on FA answers for any image it is given: a b0 volume (scanner intensities up to
a few thousand) passed as FA gets a confident age group. :func:`check_fa_values` refuses an image
that is clearly not FA and returns warnings where it is a judgement:

- refused (:class:`~hcp_cam.errors.InputError`): NaN or infinite values; no non-zero voxel; more
  than :data:`OUT_OF_RANGE_SHARE` of the brain voxels outside ``[0, 1]`` (a b0 or DWI volume, FA
  stored x1000, a signed map); a single non-zero value (a binary mask);
- warned about: a few voxels just outside ``[0, 1]`` (interpolation overshoot); a brain whose
  highest value is below :data:`LOW_MAXIMUM` (white matter reaches 0.5-0.9: an MD map in mm^2/s?);
  without a mask, a share of non-zero voxels outside :data:`BRAIN_FRACTION` (an FA map is 0 outside
  the brain: an unmasked fit, or almost nothing left).

numpy only, so that every input path (CLI, bundle, reports) can use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from hcp_cam.errors import InputError

__all__ = [
    "FACheck",
    "check_fa_values",
    "FA_TOLERANCE",
    "OUT_OF_RANGE_SHARE",
    "BRAIN_FRACTION",
    "LOW_MAXIMUM",
]

#: how far outside [0, 1] a value may lie and still count as in range (float32 rounding)
FA_TOLERANCE = 1e-3
#: share of the brain voxels outside [0, 1] from which an image is refused (below it: a warning)
OUT_OF_RANGE_SHARE = 0.01
#: share of non-zero voxels of a masked FA map in its field of view, outside which a warning is given
BRAIN_FRACTION = (0.02, 0.9)
#: below this highest value the brain has no white matter-like FA: a warning
LOW_MAXIMUM = 0.3


@dataclass(frozen=True)
class FACheck:
    """What :func:`check_fa_values` found in an image that passed.

    Attributes:
        n_voxels: voxels of the image.
        n_brain: voxels checked (the mask's, else the non-zero ones).
        minimum, maximum: the lowest and highest value over the checked voxels.
        n_outside: checked voxels outside ``[0, 1]`` (beyond :data:`FA_TOLERANCE`).
        nonzero_fraction: share of the image's voxels that are non-zero, in [0, 1].
        warnings: one line each, for the caller to log.
    """

    n_voxels: int
    n_brain: int
    minimum: float
    maximum: float
    n_outside: int
    nonzero_fraction: float
    warnings: tuple[str, ...]


def check_fa_values(
    data: np.ndarray,
    path: str | os.PathLike | None = None,
    mask: np.ndarray | None = None,
    what: str = "FA map",
) -> FACheck:
    """Refuse an image that is clearly not FA; warn where it is a judgement.

    Args:
        data: the image, 3D ``(X, Y, Z)`` (any shape works), any numeric dtype; values as stored
            after the NIfTI scaling (``np.asarray(img.dataobj)``).
        path: the file, named at the start of every message.
        mask: boolean brain mask of ``data``'s shape; the value checks use its voxels (else the
            non-zero voxels) and the field-of-view share is not judged.
        what: how messages call the image, e.g. ``"input FA map"``.

    Returns:
        the :class:`FACheck` of an image that passed, with its warnings (possibly none).

    Raises:
        InputError: NaN/Inf values, no non-zero voxel (in the mask), more than
            :data:`OUT_OF_RANGE_SHARE` of the checked voxels outside ``[0, 1]``, or a single
            non-zero value; the message gives what was found, what FA is, and what to do.
    """
    values = np.asarray(data)
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise InputError(f"{what} holds {values.dtype} values; expected real FA values in [0, 1]", path)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != values.shape:
            raise InputError(f"mask shape {mask.shape} differs from the {what} shape {values.shape}", path)
    finite = np.isfinite(values)
    if not finite.all():
        n_bad = int((~finite).sum())
        raise InputError(
            f"{what} holds {n_bad} NaN or infinite voxel(s) of {values.size}; expected finite FA in [0, 1]: "
            "set them to 0 (e.g. fslmaths IN -nan OUT)",
            path,
        )
    nonzero = values != 0
    n_nonzero = int(nonzero.sum())
    brain = nonzero if mask is None else mask
    checked = values[brain].astype(np.float64)
    if n_nonzero == 0 or not (checked != 0).any():
        where = "" if mask is None else " inside the mask"
        raise InputError(
            f"{what} is 0 everywhere{where}: expected FA of a brain, found no non-zero voxel", path
        )
    lo, hi = float(checked.min()), float(checked.max())
    outside = (checked < -FA_TOLERANCE) | (checked > 1 + FA_TOLERANCE)
    n_outside = int(outside.sum())
    found = f"values {lo:.4g} to {hi:.4g}"
    if n_outside > OUT_OF_RANGE_SHARE * checked.size:
        raise InputError(
            f"{what} does not look like FA: expected values within [0, 1], found {found} "
            f"({n_outside} of {checked.size} brain voxels outside){_guess(checked, lo, hi)}; "
            "pass an FA map (hcp-cam fa fits one from the DWI)",
            path,
        )
    distinct = np.unique(checked[checked != 0])
    if distinct.size == 1:
        raise InputError(
            f"{what} does not look like FA: its {int((checked != 0).sum())} non-zero brain voxels all hold "
            f"{distinct[0]:g} (a binary mask?); pass an FA map (hcp-cam fa fits one from the DWI)",
            path,
        )

    warnings: list[str] = []
    if n_outside:
        warnings.append(
            f"{_prefix(path)}{n_outside} brain voxel(s) of the {what} lie outside [0, 1] ({found}; "
            "interpolation overshoot?); they are used as they are"
        )
    if hi < LOW_MAXIMUM:
        warnings.append(
            f"{_prefix(path)}the {what}'s highest value is {hi:.3g}, where white matter FA reaches "
            "0.5-0.9: is it FA (not MD in mm^2/s, or a scaled copy)?"
        )
    fraction = n_nonzero / values.size
    if mask is None and not BRAIN_FRACTION[0] <= fraction <= BRAIN_FRACTION[1]:
        if fraction > BRAIN_FRACTION[1]:
            why = "an FA map is 0 outside the brain: an unmasked fit? the background counts as brain; pass a mask"
        else:
            why = "is the brain (nearly) missing, or the map cropped to a small region?"
        warnings.append(f"{_prefix(path)}{100 * fraction:.3g}% of the {what}'s voxels are non-zero: {why}")
    return FACheck(
        n_voxels=int(values.size),
        n_brain=int(checked.size),
        minimum=lo,
        maximum=hi,
        n_outside=n_outside,
        nonzero_fraction=float(fraction),
        warnings=tuple(warnings),
    )


def _prefix(path: str | os.PathLike | None) -> str:
    """``"PATH: "`` (as :class:`~hcp_cam.errors.InputError` starts its message), or ``""``."""
    return f"{os.fspath(path)}: " if path is not None else ""


def _guess(values: np.ndarray, lo: float, hi: float) -> str:
    """What an out-of-range image probably is, as a clause for the message."""
    if (
        lo >= -FA_TOLERANCE
        and hi <= 1000 * (1 + FA_TOLERANCE)
        and hi > 10
        and np.all(values == np.round(values))
    ):
        return "; whole numbers up to 1000 are FA stored x1000 (divide by 1000) or a b0/DWI volume"
    if hi > 10:
        return "; scanner intensities like these are a b0 or diffusion-weighted volume, not FA"
    if lo < -FA_TOLERANCE:
        return "; FA is never negative (a difference, z or signed map?)"
    return ""
