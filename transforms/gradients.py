"""Gradient tables: FSL ``bvals``/``bvecs`` files read, checked and rounded to shells.

FSL convention (what HCP ships): ``bvals`` is one row of N b-values in s/mm^2; ``bvecs`` is 3 rows
of N unit vectors given in the image's *voxel* frame, with the x axis flipped when the image
affine has a positive determinant (FSL works in a radiological, LAS-like voxel frame). A tensor
fitted with these vectors therefore has its eigenvectors in voxel axes, as DIPY and FSL give them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcp_cam.errors import InputError

__all__ = ["GradientTable", "read_gradients", "make_gradient_table", "tensor_design_rank"]

# a shell's nominal b-value is its mean rounded to this step (HCP: 990, 995, 1005 -> 1000)
_SHELL_STEP = 50.0
# two directions closer than this |cos| are the same axis (v and -v measure the same thing)
_SAME_AXIS_COS = 0.9999
_MIN_DIRECTIONS = 6
# DIPY's gradient_table: a direction within this of unit length is a direction, any other is none
_UNIT_ATOL = 1e-2
# scale check: s/mm^2 b-values of any protocol (ex vivo included) stay below ~2e4; in ms/um^2
# (b = 1, 2, 3) every volume would be a "b0"; in s/m^2 (b ~ 1e9) the fit would run 1e6 too weak
_MAX_B_MS_PER_UM2 = 20.0
_MIN_B_S_PER_M2 = 1e6
_MAX_PLAUSIBLE_B = 1e5


@dataclass(frozen=True)
class GradientTable:
    """A checked diffusion gradient table of N volumes.

    Attributes:
        bvals: ``(N,)`` float64, b-values in s/mm^2 exactly as given (b=5 stays 5).
        shells: ``(N,)`` float64, b-values rounded to their shell (0 for every b0 volume).
        bvecs: ``(N, 3)`` float64, unit gradient directions in the voxel frame. A b0 volume keeps
            the direction on file (b=15 with a direction is a weak diffusion weighting, as in DIPY
            and FSL); its row is zero only where the file has none (zero, NaN, or not a unit vector).
        b0_mask: ``(N,)`` bool, True where ``bvals <= b0_threshold``.
        b0_threshold: the b-value (s/mm^2) at or below which a volume counts as b0.
    """

    bvals: np.ndarray
    shells: np.ndarray
    bvecs: np.ndarray
    b0_mask: np.ndarray
    b0_threshold: float = 50.0

    def __len__(self) -> int:
        return int(self.bvals.shape[0])

    @property
    def unique_shells(self) -> np.ndarray:
        """Sorted distinct shell b-values, 0 included."""
        return np.unique(self.shells)


def _read_numbers(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        raise InputError(f"{what} file not found", path)
    if not path.is_file():
        raise InputError(f"expected a {what} text file, found a folder", path)
    try:
        arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what} as a table of numbers: {e}", path) from e
    if arr.size == 0:
        raise InputError(f"{what} file is empty", path)
    return arr


def tensor_design_rank(bvecs: np.ndarray) -> int:
    """Rank of the 6 tensor columns ``(gx^2, gy^2, gz^2, 2gxgy, 2gxgz, 2gygz)`` over ``bvecs``.

    Args:
        bvecs: ``(M, 3)`` unit directions of the diffusion-weighted volumes.

    Returns:
        An int in ``[0, 6]``; a tensor is determined only when it is 6.
    """
    g = np.asarray(bvecs, dtype=np.float64).reshape(-1, 3)
    if g.shape[0] == 0:
        return 0
    cols = np.stack(
        [
            g[:, 0] ** 2,
            g[:, 1] ** 2,
            g[:, 2] ** 2,
            2 * g[:, 0] * g[:, 1],
            2 * g[:, 0] * g[:, 2],
            2 * g[:, 1] * g[:, 2],
        ],
        axis=1,
    )
    return int(np.linalg.matrix_rank(cols, tol=1e-6))


def _distinct_axes(bvecs: np.ndarray) -> int:
    axes: list[np.ndarray] = []
    for v in bvecs:
        if not any(abs(float(v @ a)) > _SAME_AXIS_COS for a in axes):
            axes.append(v)
    return len(axes)


def _round_to_shells(bvals: np.ndarray, b0_mask: np.ndarray, tolerance: float) -> np.ndarray:
    """Group b-values within ``tolerance`` of a shell's lowest member; each group gets its rounded mean."""
    shells = np.zeros_like(bvals)
    order = np.argsort(bvals, kind="stable")
    group: list[int] = []

    def close(members: list[int]) -> None:
        if members:
            shells[members] = np.round(bvals[members].mean() / _SHELL_STEP) * _SHELL_STEP

    for i in order:
        if b0_mask[i]:
            continue
        if group and bvals[i] - bvals[group[0]] > tolerance:
            close(group)
            group = []
        group.append(int(i))
    close(group)
    return shells


def _check_b_scale(bvals: np.ndarray, b0_threshold: float, path: str | os.PathLike | None) -> None:
    """Refuse b-values in another unit than s/mm^2, judged from the values (see the constants above)."""
    top = float(bvals.max())
    if top >= _MIN_B_S_PER_M2:
        raise InputError(
            f"b-values look like s/m^2 (largest {top:.3g}); expected s/mm^2 (e.g. 0, 1000, 3000): "
            "divide them by 1e6",
            path,
        )
    if top >= _MAX_PLAUSIBLE_B:
        raise InputError(f"largest b-value {top:.3g} s/mm^2 is implausible; expected below ~2e4", path)
    if 0 < top <= _MAX_B_MS_PER_UM2:
        raise InputError(
            f"b-values look like ms/um^2 (largest {top:g}); expected s/mm^2 (e.g. 0, 1000, 3000): "
            "multiply them by 1000",
            path,
        )
    if top <= b0_threshold:
        raise InputError(
            f"no diffusion-weighted volume: every b-value is <= the b0 threshold {b0_threshold:g} s/mm^2 "
            f"(largest {top:g})",
            path,
        )


def make_gradient_table(
    bvals: np.ndarray,
    bvecs: np.ndarray,
    n_volumes: int | None = None,
    b0_threshold: float = 50.0,
    shell_tolerance: float = 100.0,
    bvals_path: str | os.PathLike | None = None,
    bvecs_path: str | os.PathLike | None = None,
) -> GradientTable:
    """Check in-memory b-values and directions and build a :class:`GradientTable`.

    Args:
        bvals: ``(N,)`` b-values in s/mm^2.
        bvecs: ``(3, N)`` (FSL) or ``(N, 3)`` directions; a b0 volume's direction that is
            non-finite (DIPY's ``small_64D`` stores NaN), zero or not unit length is read as zero.
        n_volumes: the number of volumes of the DWI these belong to, checked when given.
        b0_threshold: b-values at or below it (s/mm^2) mark b0 volumes.
        shell_tolerance: b-values within it (s/mm^2) of a shell's lowest member join that shell.
        bvals_path: named in error messages about the b-values.
        bvecs_path: named in error messages about the directions.

    Returns:
        The table, with unit ``bvecs`` (zero rows for b0 volumes without a direction).

    Raises:
        InputError: NaN or negative b-values, b-values in another unit (s/m^2, ms/um^2), a count
            that differs from ``n_volumes`` or between the files, directions not ``3 x N`` or
            ``N x 3``, a zero or non-finite direction on a diffusion-weighted volume, no b0 or no
            diffusion-weighted volume, or fewer than 6 non-collinear directions.
    """
    bvals = np.asarray(bvals, dtype=np.float64)
    if bvals.ndim == 2 and 1 in bvals.shape:
        bvals = bvals.reshape(-1)
    if bvals.ndim != 1:
        raise InputError(f"b-values must be one row of N numbers, got shape {bvals.shape}", bvals_path)
    n = bvals.shape[0]
    if not np.isfinite(bvals).all():
        raise InputError(f"b-values hold {int((~np.isfinite(bvals)).sum())} NaN or Inf values", bvals_path)
    if (bvals < 0).any():
        raise InputError(f"b-values must be >= 0, got min {bvals.min()}", bvals_path)
    if n_volumes is not None and n != n_volumes:
        raise InputError(f"{n} b-values for an image of {n_volumes} volumes", bvals_path)

    bvecs = np.asarray(bvecs, dtype=np.float64)
    if bvecs.ndim == 2 and bvecs.shape == (3, n):
        bvecs = bvecs.T.copy()
    elif bvecs.ndim == 2 and bvecs.shape == (n, 3):
        bvecs = bvecs.copy()
    else:
        raise InputError(
            f"gradient directions must be 3 x N or N x 3 with N = {n} b-values, got shape {bvecs.shape}",
            bvecs_path,
        )

    _check_b_scale(bvals, b0_threshold, bvals_path)
    b0_mask = bvals <= b0_threshold
    if not b0_mask.any():
        raise InputError(
            f"no b0 volume (no b-value <= {b0_threshold:g} s/mm^2; lowest is {bvals.min():g})", bvals_path
        )
    dw = ~b0_mask
    finite = np.isfinite(bvecs).all(axis=1)
    bad = dw & ~finite
    if bad.any():
        raise InputError(
            f"non-finite gradient direction on diffusion-weighted volumes {np.flatnonzero(bad).tolist()}",
            bvecs_path,
        )
    norms = np.linalg.norm(np.where(finite[:, None], bvecs, 0.0), axis=1)
    zero = dw & (norms < 1e-6)
    if zero.any():
        raise InputError(
            f"zero-length gradient direction on diffusion-weighted volumes {np.flatnonzero(zero).tolist()} "
            f"(b = {bvals[zero][:5].tolist()})",
            bvecs_path,
        )
    # every volume keeps its direction, as DIPY and FSL use b g g^T as given; a b0 volume without one
    # (zero, NaN as in DIPY's small_64D, or not unit length: DIPY's rule) gets a zero row
    keep = dw | (finite & (np.abs(norms - 1.0) <= _UNIT_ATOL))
    bvecs = np.where(
        keep[:, None], np.where(finite[:, None], bvecs, 0.0) / np.where(keep, norms, 1.0)[:, None], 0.0
    )

    n_axes = _distinct_axes(bvecs[dw])
    rank = tensor_design_rank(bvecs[dw])
    if n_axes < _MIN_DIRECTIONS or rank < _MIN_DIRECTIONS:
        raise InputError(
            f"a tensor needs at least {_MIN_DIRECTIONS} distinct non-collinear gradient directions, "
            f"found {n_axes} distinct axes spanning {rank} of the 6 tensor components",
            bvecs_path,
        )

    shells = _round_to_shells(bvals, b0_mask, shell_tolerance)
    for arr in (bvals, shells, bvecs, b0_mask):
        arr.setflags(write=False)  # the dataclass is frozen; keep its arrays so too
    return GradientTable(
        bvals=bvals, shells=shells, bvecs=bvecs, b0_mask=b0_mask, b0_threshold=float(b0_threshold)
    )


def read_gradients(
    bvals_path: str | os.PathLike,
    bvecs_path: str | os.PathLike,
    n_volumes: int | None = None,
    b0_threshold: float = 50.0,
    shell_tolerance: float = 100.0,
) -> GradientTable:
    """Read FSL ``bvals``/``bvecs`` text files into a checked :class:`GradientTable`.

    Args:
        bvals_path: text file with one row (or one column) of N b-values in s/mm^2.
        bvecs_path: text file with 3 rows of N directions (FSL), or N rows of 3.
        n_volumes: the DWI's number of volumes; checked against N when given.
        b0_threshold: b-values at or below it (s/mm^2) mark b0 volumes.
        shell_tolerance: b-values within it (s/mm^2) of a shell's lowest member join that shell.

    Returns:
        :class:`GradientTable` with ``bvals`` ``(N,)`` as given, ``shells`` ``(N,)``, unit
        ``bvecs`` ``(N, 3)`` (zero rows only for b0 volumes without a direction) and ``b0_mask`` ``(N,)``.

    Raises:
        InputError: a file is missing or unreadable, or fails a check of
            :func:`make_gradient_table`; the message starts with the offending file.

    Example:
        >>> gtab = read_gradients("bvals", "bvecs", n_volumes=288)  # doctest: +SKIP
        >>> gtab.unique_shells  # doctest: +SKIP
        array([   0., 1000., 2000., 3000.])
    """
    bvals_path, bvecs_path = Path(bvals_path), Path(bvecs_path)
    bvals = _read_numbers(bvals_path, "b-values")
    bvecs = _read_numbers(bvecs_path, "gradient directions")
    return make_gradient_table(
        bvals,
        bvecs,
        n_volumes=n_volumes,
        b0_threshold=b0_threshold,
        shell_tolerance=shell_tolerance,
        bvals_path=bvals_path,
        bvecs_path=bvecs_path,
    )
