"""Per-subject scaling of CAMs before the group statistics: ``zscore`` (the default) or ``raw``.

A raw CAM of class "old" is larger everywhere in a subject the network finds older (a larger logit
scales the whole weighted sum of feature maps), so the group difference of raw CAMs is mostly a
global shift: it answers "how confident", and every region with CAM values comes out significant.
The question a group map answers is "where": ``zscore`` takes each CAM minus its mean, divided by
its standard deviation, over the subject's known CAM voxels inside the brain, so a subject's map
says which voxels stand out *within* its own brain, and a global gain or offset cancels.

What it does not remove: a z-scored map has mean 0 over the domain, so a region that rises in one
group lowers the others of that group a little (a zero-sum, as with proportional scaling in PET).
"""

from __future__ import annotations

import os

import numpy as np

from hcp_cam.errors import ConfigError, InputError

__all__ = ["CAM_SCALES", "check_cam_scale", "scale_cam"]

CAM_SCALES = ("zscore", "raw")


def check_cam_scale(cam_scale: str) -> str:
    """``cam_scale`` if it is one of :data:`CAM_SCALES`.

    Raises:
        ConfigError: anything else, naming the choices.
    """
    if cam_scale not in CAM_SCALES:
        raise ConfigError(f"cam_scale must be one of {', '.join(CAM_SCALES)}; got {cam_scale!r}")
    return cam_scale


def scale_cam(
    cam: np.ndarray, inside: np.ndarray, cam_scale: str = "zscore", source: str | os.PathLike | None = None
) -> tuple[np.ndarray, float, float]:
    """One subject's CAM scaled over its known voxels inside ``inside``.

    Args:
        cam: ``(X, Y, Z)`` CAM in template space, NaN where unknown.
        inside: ``(X, Y, Z)`` bool, the brain the statistics look at (the template's mask).
        cam_scale: ``"zscore"``: ``(cam - mean) / sd`` over the known voxels inside (population sd);
            ``"raw"``: unchanged.
        source: the CAM file, named in the error.

    Returns:
        ``(scaled, mean, sd)``: the scaled map (float32; NaN stays NaN, voxels outside ``inside``
        are left as they are) and the raw mean and sd it used (NaN when no voxel is known).

    Raises:
        InputError: ``zscore`` of a CAM that is constant over its known voxels (no sd to divide by).
    """
    check_cam_scale(cam_scale)
    cam = np.asarray(cam, dtype=np.float32)
    values = cam[np.asarray(inside, dtype=bool) & np.isfinite(cam)].astype(np.float64)
    if values.size == 0:  # nothing known inside the brain: the map stays unknown
        return cam, float("nan"), float("nan")
    mean, sd = float(values.mean()), float(values.std())
    if cam_scale == "raw":
        return cam, mean, sd
    if not sd > 1e-12 * max(1.0, abs(mean)):
        raise InputError(
            f"the CAM is constant ({mean:.6g}) over its {values.size} known brain voxels: it cannot be "
            f"z-scored (use cam_scale raw to test it as it is)",
            source,
        )
    return ((cam - mean) / sd).astype(np.float32), mean, sd
