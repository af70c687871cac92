"""HCP-like multi-shell gradient schemes and the diffusion signal of a phantom, with Rician noise.

The signal is computed in the frame of the image axes (where FSL bvecs live), one volume at a
time in float32, so an HCP-size acquisition (145 x 174 x 145 x 288) never needs more than a few
volumes in memory: ``S = S0 * exp(-b * g^T D g)`` with ``D = rd I + (ad - rd) v1 v1^T``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from hcp_cam.errors import ConfigError
from hcp_cam.io import atomic_path
from hcp_cam.synth.phantom import Phantom

__all__ = [
    "S0_WHITE_MATTER",
    "GradientScheme",
    "make_gradient_scheme",
    "hemisphere_directions",
    "dwi_volume",
    "add_rician_noise",
    "iter_dwi_volumes",
    "seed_words",
]

S0_WHITE_MATTER = 1000.0  # b0 signal of white matter; SNR is relative to it
_B0_VALUE = 5.0  # HCP's b0 volumes are acquired at b=5 s/mm^2
_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


@dataclass
class GradientScheme:
    """Diffusion gradients in the frame of the image axes.

    Attributes:
        bvals: ``(N,)`` float64 b-values in s/mm^2 as acquired (drift included, b0s at 5).
        bvecs: ``(N, 3)`` float64 unit vectors; zero rows for b0 volumes.
        shells: the nominal shells, s/mm^2.
    """

    bvals: np.ndarray
    bvecs: np.ndarray
    shells: tuple[float, ...] = field(default=())

    @property
    def n(self) -> int:
        """Number of volumes N."""
        return int(self.bvals.shape[0])

    @property
    def b0_mask(self) -> np.ndarray:
        """``(N,)`` bool, True for the non-diffusion-weighted volumes (b < 50)."""
        return self.bvals < 50.0

    def fsl_bvecs(self, affine: np.ndarray) -> np.ndarray:
        """``(N, 3)`` bvecs in FSL's convention for an image with ``affine``.

        FSL reads bvecs in the voxel frame of a radiological (negative-determinant, e.g. LAS)
        image and flips x for a neurological (positive-determinant) one.
        """
        bvecs = self.bvecs.copy()
        if np.linalg.det(np.asarray(affine)[:3, :3]) > 0:
            bvecs[:, 0] *= -1.0
        return bvecs + 0.0  # no negative zeros in the text files

    def write_fsl(
        self, bvals_path: str | os.PathLike, bvecs_path: str | os.PathLike, affine: np.ndarray
    ) -> None:
        """Write FSL text files atomically: bvals one row of N integers, bvecs 3 rows of N."""
        with atomic_path(bvals_path) as tmp:
            tmp.write_text(" ".join(f"{b:g}" for b in self.bvals) + "\n")
        rows = self.fsl_bvecs(affine).T
        with atomic_path(bvecs_path) as tmp:
            tmp.write_text("".join(" ".join(f"{x:.6f}" for x in row) + "\n" for row in rows))


def hemisphere_directions(n: int, twist: float = 0.0) -> np.ndarray:
    """``n`` well-spread unit vectors on the upper hemisphere (a Fibonacci lattice).

    Args:
        n: number of directions (>= 1).
        twist: rotation about z in radians, so that the shells do not repeat each other.

    Returns:
        ``(n, 3)`` float64 unit vectors with z >= 0; deterministic.
    """
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (i + 0.5) / n  # equal-area bands from the pole to the equator
    r = np.sqrt(1.0 - z**2)
    phi = i * _GOLDEN_ANGLE + twist
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def make_gradient_scheme(
    n_b0: int = 3,
    n_per_shell: int = 10,
    shells: Sequence[float] = (1000.0, 2000.0, 3000.0),
    seed: int | Sequence[int] = 0,
    drift: bool = True,
    twist: int = 0,
) -> GradientScheme:
    """An HCP-like multi-shell scheme: b0s spread through the run, shells interleaved.

    Args:
        n_b0: number of b0 volumes (>= 1); the first volume is always a b0.
        n_per_shell: directions per shell; at least 6 diffusion-weighted volumes in all.
        shells: nominal b-values in s/mm^2 (each > 50).
        seed: draws the b-value drift (multiples of 5, within +-15) and the direction signs.
        drift: jitter the b-values as a scanner does (990, 1005, ...); False gives exact shells.
        twist: direction-set index; different values give differently rotated directions (used
            for the separate runs of the unprocessed layout).

    Returns:
        a :class:`GradientScheme` with ``n_b0 + n_per_shell * len(shells)`` volumes; bvecs are
        rounded to the 6 decimals written to disk, so the files describe the signal exactly.

    Raises:
        ConfigError: a count or b-value is out of range.
    """
    shells = tuple(float(b) for b in shells)
    if n_b0 < 1:
        raise ConfigError(f"need at least one b0 volume, got n_b0={n_b0}")
    if not shells or min(shells) <= 50.0:
        raise ConfigError(f"shells must be b-values above 50 s/mm^2, got {shells}")
    if n_per_shell < 1 or n_per_shell * len(shells) < 6:
        raise ConfigError(
            f"a tensor fit needs >= 6 diffusion-weighted volumes, got {n_per_shell} x {len(shells)}"
        )
    rng = np.random.default_rng([*seed_words(seed), 101, twist])
    dw_b, dw_g = [], []
    for s, b in enumerate(shells):
        dirs = hemisphere_directions(n_per_shell, twist=(s + len(shells) * twist) * _GOLDEN_ANGLE / 3.0)
        dirs *= rng.choice([-1.0, 1.0], size=(n_per_shell, 1))  # either pole is the same measurement
        jitter = 5.0 * rng.integers(-3, 4, size=n_per_shell) if drift else np.zeros(n_per_shell)
        dw_b.append(b + jitter)
        dw_g.append(dirs)
    # interleave the shells volume by volume, as HCP's runs mix b-values
    order = np.argsort(np.tile(np.arange(n_per_shell), len(shells)), kind="stable")
    dw_b = np.concatenate(dw_b)[order]
    dw_g = np.concatenate(dw_g)[order]
    n = n_b0 + dw_b.size
    b0_at = np.unique(np.round(np.arange(n_b0) * n / n_b0).astype(int))
    is_b0 = np.zeros(n, dtype=bool)
    is_b0[b0_at] = True
    bvals = np.zeros(n)
    bvecs = np.zeros((n, 3))
    bvals[is_b0] = _B0_VALUE
    bvals[~is_b0] = dw_b
    g = np.round(dw_g, 6)
    bvecs[~is_b0] = g
    return GradientScheme(bvals=bvals, bvecs=bvecs, shells=shells)


def seed_words(seed: int | Sequence[int]) -> list[int]:
    """A seed as a list of non-negative ints, so that streams can be derived by appending words."""
    words = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]
    if any(w < 0 for w in words):
        raise ConfigError(f"seeds must be non-negative integers, got {seed}")
    return words


def dwi_volume(
    phantom: Phantom, bval: float, bvec: np.ndarray, s0_scale: float = S0_WHITE_MATTER
) -> np.ndarray:
    """Noise-free signal of one volume.

    Args:
        phantom: the anatomy and tensors, grid ``(X, Y, Z)``.
        bval: b-value in s/mm^2.
        bvec: ``(3,)`` gradient direction in the image-axis frame (zero for a b0).
        s0_scale: signal of white matter at b=0.

    Returns:
        ``(X, Y, Z)`` float32 signal, 0 outside the brain.
    """
    g = np.asarray(bvec, dtype=np.float32)
    cos2 = np.square(phantom.v1 @ g)  # (g . v1)^2; 0 for a b0's zero vector
    # g^T D g = rd |g|^2 + (ad - rd) (g . v1)^2 ; |g| is 0 or 1
    gdg = phantom.rd * np.float32(g @ g) + (phantom.ad - phantom.rd) * cos2
    return (phantom.s0 * np.float32(s0_scale) * np.exp(np.float32(-bval) * gdg)).astype(np.float32)


def add_rician_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma``.

    Args:
        signal: noise-free magnitude, any shape.
        sigma: noise standard deviation per channel, same unit as ``signal``; 0 returns a copy.
        rng: the noise stream (two standard-normal draws per voxel, in this order).

    Returns:
        float32 array of the same shape, ``sqrt((S + sigma n1)^2 + (sigma n2)^2)``.
    """
    signal = np.asarray(signal, dtype=np.float32)
    if sigma <= 0:
        return signal.copy()
    n = rng.standard_normal((2, *signal.shape), dtype=np.float32)
    s = np.float32(sigma)
    return np.hypot(signal + s * n[0], s * n[1])


def iter_dwi_volumes(
    phantom: Phantom,
    scheme: GradientScheme,
    sigma: float,
    rng: np.random.Generator | None,
    mask_output: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the ``N`` volumes of an acquisition one by one, ``(X, Y, Z)`` float32 each.

    Args:
        phantom: anatomy and tensors.
        scheme: the gradients; volume ``k`` uses ``scheme.bvals[k]``, ``scheme.bvecs[k]``.
        sigma: Rician noise level (0 or ``rng=None``: noise-free).
        rng: the noise stream, consumed in volume order (same seed, same volumes).
        mask_output: zero everything outside the brain, as in HCP's preprocessed ``data.nii.gz``.
    """
    inside = phantom.tissue > 0
    for b, g in zip(scheme.bvals, scheme.bvecs, strict=True):
        vol = dwi_volume(phantom, float(b), g)
        if rng is not None and sigma > 0:
            vol = add_rician_noise(vol, sigma, rng)
        if mask_output:
            vol[~inside] = 0.0
        yield vol
