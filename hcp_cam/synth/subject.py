"""One synthetic subject in memory: its anatomy, gradients, affine and noise, nothing on disk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hcp_cam.errors import ConfigError
from hcp_cam.synth.phantom import DEFAULT_ROI_CENTER, DEFAULT_ROI_RADIUS, Phantom, make_affine, make_phantom
from hcp_cam.synth.signal import (
    S0_WHITE_MATTER,
    GradientScheme,
    iter_dwi_volumes,
    make_gradient_scheme,
    seed_words,
)

__all__ = [
    "DEFAULT_SHAPE",
    "DEFAULT_VOXEL_SIZE",
    "check_subject_params",
    "draw_misalignment",
    "SynthSubject",
    "make_subject",
    "SynthDWI",
    "make_dwi",
]

# misalignment of a head inside its grid (``make_subject(misalign=True)``): at most this rotation and shift
MAX_ROTATION_DEG = 10.0
MAX_SHIFT_MM = 6.0

# demo size: 2.5 mm voxels over a 100 x 120 x 100 mm field of view; a few seconds per subject
DEFAULT_SHAPE: tuple[int, int, int] = (40, 48, 40)
DEFAULT_VOXEL_SIZE: tuple[float, float, float] = (2.5, 2.5, 2.5)


def check_subject_params(
    shape: Sequence[int], voxel_size: Sequence[float], effect_size: float, snr: float | None
) -> None:
    """Raise :class:`ConfigError` for a grid, effect size or SNR that :func:`make_subject` refuses."""
    if len(shape) != 3 or min(shape) < 8:
        raise ConfigError(f"shape must be 3 sizes of at least 8 voxels, got {tuple(shape)}")
    if len(voxel_size) != 3 or min(voxel_size) <= 0:
        raise ConfigError(f"voxel_size must be 3 positive sizes in mm, got {tuple(voxel_size)}")
    if effect_size < 0:
        raise ConfigError(f"effect_size must be >= 0, got {effect_size}")
    if snr is not None and not snr > 0:
        raise ConfigError(f"snr must be > 0 (or None for no noise), got {snr}")


@dataclass
class SynthSubject:
    """One synthetic subject in memory: anatomy, gradients, geometry and its noise stream.

    The DWI is not stored: :meth:`volumes` regenerates it volume by volume (identically on every
    call), so HCP-size subjects can be streamed to disk.

    Attributes:
        subject: 6-digit id.
        group: ``"young"`` or ``"old"``.
        phantom: tissues, tensors and the effect region on the ``(X, Y, Z)`` grid.
        scheme: the gradients of run 0.
        affine: ``(4, 4)`` voxel-to-world (RAS mm) affine.
        sigma: Rician noise level (same unit as the signal; WM S0 is ``S0_WHITE_MATTER``).
        seed: the subject's seed words; noise of run ``r`` comes from ``[*seed, 202, r]``.
        misalignment: ``(4, 4)`` rigid world (RAS mm) transform that moved the anatomy inside the
            grid (a point of the unmoved head at ``x`` lies at ``misalignment @ x``), or ``None``.
    """

    subject: str
    group: str
    phantom: Phantom
    scheme: GradientScheme
    affine: np.ndarray
    sigma: float
    seed: tuple[int, ...]
    misalignment: np.ndarray | None = None

    @property
    def template_to_subject(self) -> np.ndarray:
        """``(4, 4)`` world (RAS mm) affine from the average brain (the generator's template, on the
        same grid and affine) to this subject: the brain's shift and size, then the misalignment.

        Leaves out the subject's small non-affine shape variation (the bulges of ``make_phantom``).
        """
        c = (np.asarray(self.phantom.tissue.shape, dtype=np.float64) - 1.0) / 2.0
        size = np.eye(4)
        size[:3, :3] *= self.phantom.scale
        size[:3, 3] = (1.0 - self.phantom.scale) * c + np.asarray(self.phantom.shift)
        moved = self.misalignment if self.misalignment is not None else np.eye(4)
        return moved @ self.affine @ size @ np.linalg.inv(self.affine)

    @property
    def fa(self) -> np.ndarray:
        """``(X, Y, Z)`` float32 true FA."""
        return self.phantom.fa

    @property
    def roi(self) -> np.ndarray:
        """``(X, Y, Z)`` uint8 effect region."""
        return self.phantom.roi

    @property
    def mask(self) -> np.ndarray:
        """``(X, Y, Z)`` uint8 brain mask."""
        return self.phantom.mask

    def volumes(
        self,
        noise: bool = True,
        run: int = 0,
        scheme: GradientScheme | None = None,
        mask_output: bool = False,
    ) -> Iterator[np.ndarray]:
        """Yield the run's volumes, ``(X, Y, Z)`` float32 each (see :func:`iter_dwi_volumes`)."""
        rng = np.random.default_rng([*self.seed, 202, run]) if noise else None
        return iter_dwi_volumes(self.phantom, scheme or self.scheme, self.sigma, rng, mask_output)

    def dwi(self, noise: bool = True, run: int = 0, scheme: GradientScheme | None = None) -> np.ndarray:
        """The whole run as one ``(N, X, Y, Z)`` float32 array (channel-first, as MONAI's)."""
        scheme = scheme or self.scheme
        out = np.empty((scheme.n, *self.phantom.tissue.shape), dtype=np.float32)
        for k, vol in enumerate(self.volumes(noise, run, scheme)):
            out[k] = vol
        return out


def make_subject(
    subject: str = "100206",
    group: str = "young",
    shape: Sequence[int] = DEFAULT_SHAPE,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    seed: int | Sequence[int] = 0,
    effect_size: float = 0.5,
    snr: float | None = 30.0,
    scheme: GradientScheme | None = None,
    oblique_deg: float = 0.0,
    jitter: float = 1.0,
    effect_jitter: float = 0.2,
    roi_center: Sequence[float] = DEFAULT_ROI_CENTER,
    roi_radius: float = DEFAULT_ROI_RADIUS,
    age_fraction: float | None = None,
    misalign: bool = False,
    max_rotation_deg: float = MAX_ROTATION_DEG,
    max_shift_mm: float = MAX_SHIFT_MM,
) -> SynthSubject:
    """Make one subject in memory (no file is written).

    Args:
        subject: its id.
        group: ``"young"`` (no effect) or ``"old"`` (RD in the effect region times
            ``1 + effect_size * a``, ``a ~ N(1, effect_jitter)`` clipped to [0.5, 1.5]).
        shape: grid ``(X, Y, Z)`` in voxels.
        voxel_size: mm.
        seed: the subject's seed (an int or a list of ints); the anatomy draws do not depend on
            ``group``, so a young and an old subject with the same seed differ only in the region.
        effect_size: relative RD increase of old subjects (>= 0).
        snr: S0 of white matter over the noise sigma; ``None`` or ``inf`` for no noise.
        scheme: gradients; default :func:`make_gradient_scheme` with this seed.
        oblique_deg: obliquity of the affine (see :func:`make_affine`).
        jitter: scale of subject-to-subject variability (0: identical anatomy).
        effect_jitter: relative standard deviation of the old subjects' effect amplitude.
        roi_center: effect-region centre, normalised coordinates.
        roi_radius: effect-region radius, normalised coordinates.
        age_fraction: a graded effect instead of a group effect: RD in the region times
            ``1 + effect_size * a * age_fraction`` (``age_fraction`` in [0, 1], the subject's place in
            the age range; :mod:`hcp_cam.synth.graded`), whatever ``group`` says (``None``: by group).
        misalign: rotate and shift the anatomy inside the grid (a head lying differently in the
            scanner), by a rigid transform drawn from the seed (:func:`draw_misalignment`); the
            affine stays the same. Off by default (then nothing differs from earlier versions).
        max_rotation_deg: largest rotation angle of ``misalign``, degrees.
        max_shift_mm: largest shift of ``misalign``, mm.

    Raises:
        ConfigError: unknown group, negative effect size, non-positive SNR, bad shape, or an
            ``age_fraction`` outside [0, 1].
    """
    if group not in ("young", "old"):
        raise ConfigError(f"group must be 'young' or 'old', got {group!r}")
    if age_fraction is not None and not 0.0 <= float(age_fraction) <= 1.0:
        raise ConfigError(f"age_fraction must be in [0, 1], got {age_fraction}")
    check_subject_params(shape, voxel_size, effect_size, snr)
    words = tuple(seed_words(seed))
    amplitude = float(
        np.clip(np.random.default_rng([*words, 404]).normal(1.0, effect_jitter * jitter), 0.5, 1.5)
    )
    effect = effect_size * amplitude if group == "old" else 0.0
    if age_fraction is not None:
        effect = effect_size * amplitude * float(age_fraction)
    affine = make_affine(shape, voxel_size, oblique_deg)
    moved = index_map = direction_map = None
    if misalign:
        moved = draw_misalignment(np.random.default_rng([*words, 606]), max_rotation_deg, max_shift_mm)
        # voxel i shows the anatomy that sat at index inv(A) inv(T) A i before the head moved
        index_map = np.linalg.inv(affine) @ np.linalg.inv(moved) @ affine
        axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)  # image-axes mm frame -> world
        direction_map = axes.T @ moved[:3, :3] @ axes
    phantom = make_phantom(
        shape,
        voxel_size,
        rng=np.random.default_rng([*words, 303]),
        effect=effect,
        jitter=jitter,
        roi_center=roi_center,
        roi_radius=roi_radius,
        index_map=index_map,
        direction_map=direction_map,
    )
    sigma = 0.0 if snr is None or not np.isfinite(snr) else S0_WHITE_MATTER / float(snr)
    return SynthSubject(
        subject=str(subject),
        group=group,
        phantom=phantom,
        scheme=scheme if scheme is not None else make_gradient_scheme(seed=words),
        affine=affine,
        sigma=sigma,
        seed=words,
        misalignment=moved,
    )


def draw_misalignment(
    rng: np.random.Generator, max_rotation_deg: float = MAX_ROTATION_DEG, max_shift_mm: float = MAX_SHIFT_MM
) -> np.ndarray:
    """A random rigid world transform: a rotation about the grid centre (world origin of
    :func:`~hcp_cam.synth.phantom.make_affine`) by up to ``max_rotation_deg`` about a uniformly drawn
    axis, then a shift of up to ``max_shift_mm`` (uniform in the ball).

    Returns:
        ``(4, 4)`` float64 RAS-mm matrix ``[[R, t], [0, 1]]``.

    Raises:
        ConfigError: a negative bound, or a rotation above 90 degrees.
    """
    if not 0 <= max_rotation_deg <= 90 or max_shift_mm < 0:
        raise ConfigError(
            f"misalignment needs 0 <= max rotation <= 90 degrees and max shift >= 0 mm, "
            f"got {max_rotation_deg} and {max_shift_mm}"
        )
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)  # Rodrigues
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = direction * max_shift_mm * rng.uniform() ** (1.0 / 3.0)
    return out


@dataclass
class SynthDWI:
    """An in-memory acquisition for benchmarks.

    Attributes:
        dwi: ``(N, X, Y, Z)`` float32 signal (channel-first).
        bvals: ``(N,)`` s/mm^2.
        bvecs: ``(N, 3)`` unit vectors in the image-axis frame (zero for b0s).
        mask: ``(X, Y, Z)`` uint8 brain mask.
        fa: ``(X, Y, Z)`` float32 true FA.
        affine: ``(4, 4)`` voxel-to-world affine.
    """

    dwi: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    mask: np.ndarray
    fa: np.ndarray
    affine: np.ndarray


def make_dwi(
    shape: Sequence[int] = DEFAULT_SHAPE,
    n_b0: int = 3,
    n_per_shell: int = 10,
    shells: Sequence[float] = (1000.0, 2000.0, 3000.0),
    seed: int | Sequence[int] = 0,
    snr: float | None = 30.0,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
) -> SynthDWI:
    """One young subject's whole acquisition in memory, e.g. ``make_dwi((145, 174, 145), 18, 90)``.

    The array is filled volume by volume in float32: HCP size (288 volumes) takes 4.2 GB for the
    result plus a few hundred MB of working memory.
    """
    scheme = make_gradient_scheme(n_b0, n_per_shell, shells, seed=seed)
    subj = make_subject(shape=shape, voxel_size=voxel_size, seed=seed, snr=snr, scheme=scheme)
    return SynthDWI(
        dwi=subj.dwi(), bvals=scheme.bvals, bvecs=scheme.bvecs, mask=subj.mask, fa=subj.fa, affine=subj.affine
    )
