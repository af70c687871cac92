"""Brain-shaped diffusion phantom: tissues, tract orientations, tensors and the age-effect region.

Geometry is defined in *normalised* coordinates ``u = (index - centre) / semi_axes`` (the brain
surface is near ``|u| = 1``), so the anatomy scales with the grid; orientations are computed in
millimetres along the image axes (the frame FSL bvecs live in), so curved tracts stay tangent to
their centre lines on anisotropic voxels. Axis 0 is left-right, 1 anterior-posterior, 2
superior-inferior (the order of an LAS grid).

Every tensor is cylindrically symmetric: axial diffusivity ``ad`` along the unit vector ``v1``,
radial diffusivity ``rd`` across it, so ``D = rd * I + (ad - rd) * v1 v1^T`` and the true FA has a
closed form (:func:`fa_from_diffusivities`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "BACKGROUND",
    "CSF",
    "GM",
    "WM",
    "TISSUE_PARAMS",
    "DEFAULT_ROI_CENTER",
    "DEFAULT_ROI_RADIUS",
    "Phantom",
    "make_phantom",
    "make_affine",
    "fa_from_diffusivities",
]

# tissue labels of `Phantom.tissue`
BACKGROUND, CSF, GM, WM = 0, 1, 2, 3
# tract labels of `Phantom.tract` (0 = white matter outside the named tracts)
TRACTS = {1: "corpus_callosum", 2: "corticospinal", 3: "cingulum"}

# (axial, radial) diffusivity in mm^2/s and S0 relative to white matter
TISSUE_PARAMS: dict[str, tuple[float, float, float]] = {
    "csf": (3.0e-3, 3.0e-3, 2.2),
    "gm": (0.95e-3, 0.72e-3, 1.25),  # FA ~0.17
    "wm": (1.6e-3, 0.50e-3, 1.0),  # WM between tracts, FA ~0.63
    "tract": (1.7e-3, 0.35e-3, 1.0),  # FA ~0.77
}

# effect region: a sphere in normalised coordinates, intersected with white matter. Near the centre so
# that the centre slices along every axis cut it (findings.md: off-centre effects are not learnt), and
# above the lateral ventricle on the +x side (centrum semiovale, callosum, corticospinal tract; left
# in the demo's LAS grid) so that its centre is white matter: a sphere around the ventricle made a
# shell whose middle is CSF, and a CAM whose cells span ~8 voxels peaked in that middle, one voxel
# off the region (docs/results.md).
DEFAULT_ROI_CENTER: tuple[float, float, float] = (0.25, -0.05, 0.3)
DEFAULT_ROI_RADIUS: float = 0.3

_SEMI_AXIS_FRACTION = 0.42  # brain semi-axis / grid size: leaves a margin for shifts and bumps
_GM_INNER = 0.85  # normalised radius where cortex starts


@dataclass
class Phantom:
    """One subject's anatomy on a voxel grid of shape ``(X, Y, Z)``.

    Attributes:
        tissue: ``(X, Y, Z)`` uint8 labels: 0 background, 1 CSF, 2 GM, 3 WM.
        tract: ``(X, Y, Z)`` uint8 tract labels (see ``TRACTS``), 0 elsewhere.
        v1: ``(X, Y, Z, 3)`` float32 principal direction (unit vector along the image axes, in mm
            space); zero in background and CSF.
        ad: ``(X, Y, Z)`` float32 axial diffusivity in mm^2/s (0 in background).
        rd: ``(X, Y, Z)`` float32 radial diffusivity in mm^2/s, the age effect included.
        s0: ``(X, Y, Z)`` float32 non-diffusion-weighted signal relative to white matter.
        roi: ``(X, Y, Z)`` uint8, 1 where the age effect applies (the blob within white matter),
            whether or not this subject carries the effect.
        effect: the relative RD increase applied in ``roi`` (0 for a young subject).
        shift: the brain centre's offset from the grid centre, voxels (subject variability).
        scale: the brain's size relative to the average brain (subject variability).
    """

    tissue: np.ndarray
    tract: np.ndarray
    v1: np.ndarray
    ad: np.ndarray
    rd: np.ndarray
    s0: np.ndarray
    roi: np.ndarray
    effect: float = 0.0
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    @property
    def mask(self) -> np.ndarray:
        """``(X, Y, Z)`` uint8 brain mask (every tissue but background)."""
        return (self.tissue != BACKGROUND).astype(np.uint8)

    @property
    def fa(self) -> np.ndarray:
        """``(X, Y, Z)`` float32 true (noise-free) fractional anisotropy, 0 outside the brain."""
        return fa_from_diffusivities(self.ad, self.rd)


def fa_from_diffusivities(ad: np.ndarray, rd: np.ndarray) -> np.ndarray:
    """FA of cylindrically symmetric tensors with eigenvalues ``(ad, rd, rd)``.

    Args:
        ad: axial diffusivity, any shape, mm^2/s.
        rd: radial diffusivity, same shape, mm^2/s.

    Returns:
        float32 array of the same shape in [0, 1]; 0 where both diffusivities are 0.

    Notes:
        ``FA = |ad - rd| / sqrt(ad^2 + 2 rd^2)``, the general formula with two equal eigenvalues.
    """
    ad = np.asarray(ad, dtype=np.float64)
    rd = np.asarray(rd, dtype=np.float64)
    norm = np.sqrt(ad**2 + 2.0 * rd**2)
    fa = np.divide(np.abs(ad - rd), norm, out=np.zeros_like(norm), where=norm > 0)
    return fa.astype(np.float32)


def _normalised_grid(
    shape: Sequence[int],
    voxel_size: Sequence[float],
    shift: np.ndarray,
    scale: float,
    index_map: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Normalised coordinates (one per axis) and the semi-axes in mm.

    Without ``index_map`` the coordinates are open grids (broadcastable, ``(X, 1, 1)`` etc.); with a
    ``(4, 4)`` voxel-index map they are full ``(X, Y, Z)`` arrays of the anatomy at the mapped indices.
    """
    semi_vox = _SEMI_AXIS_FRACTION * np.asarray(shape, dtype=np.float64) * scale
    centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0 + shift
    if index_map is not None:
        idx = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij"), -1)
        mapped = idx @ np.asarray(index_map, dtype=np.float64)[:3, :3].T + np.asarray(index_map)[:3, 3]
        return [(mapped[..., a] - centre[a]) / semi_vox[a] for a in range(3)], semi_vox * np.asarray(
            voxel_size, dtype=np.float64
        )
    axes = []
    for a, n in enumerate(shape):
        view = [1, 1, 1]
        view[a] = n
        axes.append(((np.arange(n) - centre[a]) / semi_vox[a]).reshape(view))
    return axes, semi_vox * np.asarray(voxel_size, dtype=np.float64)


def _unit(vx: np.ndarray, vy: np.ndarray, vz: np.ndarray) -> np.ndarray:
    """Stack three broadcastable components into unit vectors ``(..., 3)``."""
    v = np.stack(np.broadcast_arrays(vx, vy, vz), axis=-1).astype(np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


def _smooth_field(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance random field smooth over ~1/8 of the grid; made coarse then upsampled (cheap)."""
    coarse = tuple(max(4, n // 4) for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma=1.0, mode="wrap")
    field = ndimage.zoom(field, [n / c for n, c in zip(shape, coarse, strict=True)], order=1)
    field = field[: shape[0], : shape[1], : shape[2]]
    return (field - field.mean()) / (field.std() + 1e-12)


def make_phantom(
    shape: Sequence[int],
    voxel_size: Sequence[float] = (2.5, 2.5, 2.5),
    rng: np.random.Generator | None = None,
    effect: float = 0.0,
    jitter: float = 1.0,
    roi_center: Sequence[float] = DEFAULT_ROI_CENTER,
    roi_radius: float = DEFAULT_ROI_RADIUS,
    texture: float = 0.05,
    index_map: np.ndarray | None = None,
    direction_map: np.ndarray | None = None,
) -> Phantom:
    """Build one subject's anatomy and tensors.

    Args:
        shape: grid ``(X, Y, Z)`` in voxels.
        voxel_size: ``(dx, dy, dz)`` in mm; only orientations depend on it (tangents in mm).
        rng: source of the subject's variability; ``None`` gives the average anatomy.
        effect: relative RD increase in the effect region (``rd * (1 + effect)``); 0 for young.
        jitter: scales every subject-to-subject variation (shift, size, shape, diffusivity
            offsets, texture); 0 gives identical brains.
        roi_center: effect-region centre in normalised coordinates (brain surface ~1).
        roi_radius: effect-region radius in normalised coordinates.
        texture: standard deviation of a smooth relative RD modulation (within-subject texture).
        index_map: ``(4, 4)`` map from a voxel index of the grid to the index at which the anatomy
            is drawn (a misaligned head: :func:`hcp_cam.synth.subject.make_subject`); ``None`` (the
            default) draws it at the voxel itself.
        direction_map: ``(3, 3)`` rotation applied to the fibre directions (in the image-axes mm
            frame) with ``index_map``, so that tracts turn with the anatomy.

    Returns:
        a :class:`Phantom` on the grid.
    """
    shape = tuple(int(n) for n in shape)
    j = float(jitter) if rng is not None else 0.0

    def draw(sd: float, size: int | None = None) -> np.ndarray | float:
        return rng.normal(0.0, sd * j, size) if j > 0 else 0.0

    shift = np.asarray(draw(0.6, 3), dtype=np.float64) * np.ones(3)  # voxels
    scale = 1.0 + float(draw(0.03))
    (ux, uy, uz), semi_mm = _normalised_grid(shape, voxel_size, shift, scale, index_map)

    # deformed ellipsoid: wider laterally, flatter underneath, a little larger at the front
    r = np.sqrt(ux**2 + uy**2 + uz**2)
    safe = np.maximum(r, 1e-9)
    nx, ny, nz = ux / safe, uy / safe, uz / safe
    bulge = (
        1.0
        + (0.05 + draw(0.02)) * nx**2
        + (0.04 + draw(0.02)) * ny
        - (0.18 + draw(0.03)) * np.minimum(nz, 0) ** 2
    )
    rho = r / bulge
    brain = rho < 1.0
    ventricles = np.zeros(shape, dtype=bool)
    for side in (-1.0, 1.0):  # lateral ventricles: thin, elongated front to back, beside the midline
        dx, dy, dz = (ux - side * 0.1) / 0.08, (uy - 0.02) / 0.33, (uz - 0.04) / 0.15
        ventricles |= dx**2 + dy**2 + dz**2 < 1.0
    ventricles &= brain
    wm = brain & (rho < _GM_INNER) & ~ventricles
    gm = brain & ~wm & ~ventricles

    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[ventricles] = CSF
    tissue[gm] = GM
    tissue[wm] = WM

    # orientations: radial outside the tracts (corona-radiata-like and radial cortex), then tracts
    v1 = _unit(ux * semi_mm[0], uy * semi_mm[1], uz * semi_mm[2])
    tract = np.zeros(shape, dtype=np.uint8)
    # corpus callosum: a left-right band arching upwards laterally, z_c = 0.22 + 0.5 x^2
    cc = (np.abs(uz - (0.22 + 0.5 * ux**2)) < 0.07) & (np.abs(uy) < 0.4) & (np.abs(ux) < 0.6)
    cc_dir = _unit(np.ones_like(ux), 0.0, semi_mm[2] * 1.0 * (ux * semi_mm[0]) / semi_mm[0] ** 2)
    # corticospinal pair: superior-inferior, fanning out laterally towards the top, x_c = +-(0.2 + 0.1 z)
    cst = np.zeros(shape, dtype=bool)
    cst_dir = np.zeros((*shape, 3))
    for side in (-1.0, 1.0):
        m = ((ux - side * (0.2 + 0.1 * uz)) ** 2 + (uy + 0.05) ** 2 < 0.09**2) & (uz > -0.85) & (uz < 0.7)
        m = np.broadcast_to(m, shape)
        d = _unit(side * 0.1 * semi_mm[0] / semi_mm[2], 0.0, 1.0)
        cst_dir[m] = d.reshape(-1, 3)[0]
        cst |= m
    # cingulum-like pair: anterior-posterior, above the callosum
    cing = (((np.abs(ux) - 0.4) ** 2 + (uz - 0.45) ** 2) < 0.08**2) & (np.abs(uy) < 0.6)
    for label, region, direction in (
        (1, cc, cc_dir),
        (2, cst, cst_dir),
        (3, cing, np.array([0.0, 1.0, 0.0])),
    ):
        sel = np.broadcast_to(region, shape) & wm
        tract[sel] = label
        v1[sel] = np.broadcast_to(direction, (*shape, 3))[sel]
    v1[tissue <= CSF] = 0.0

    ad = np.zeros(shape, dtype=np.float64)
    rd = np.zeros(shape, dtype=np.float64)
    s0 = np.zeros(shape, dtype=np.float64)
    for sel, key in ((ventricles, "csf"), (gm, "gm"), (wm & (tract == 0), "wm"), (wm & (tract > 0), "tract")):
        ad[sel], rd[sel], s0[sel] = TISSUE_PARAMS[key]

    # subject-level offsets: overall diffusivity (FA-neutral) and white-matter RD (FA-changing)
    overall = 1.0 + float(draw(0.03))
    ad *= overall
    rd *= overall
    rd[wm] *= 1.0 + float(draw(0.02))
    if j > 0 and texture > 0:
        rd[brain & ~ventricles] *= (1.0 + texture * j * _smooth_field(shape, rng))[brain & ~ventricles]

    cx, cy, cz = roi_center
    blob = (ux - cx) ** 2 + (uy - cy) ** 2 + (uz - cz) ** 2 < float(roi_radius) ** 2
    roi = blob & wm
    rd[roi] *= 1.0 + float(effect)
    if direction_map is not None:
        v1 = v1 @ np.asarray(direction_map, dtype=np.float64).T

    return Phantom(
        tissue=tissue,
        tract=tract,
        v1=v1.astype(np.float32),
        ad=ad.astype(np.float32),
        rd=rd.astype(np.float32),
        s0=s0.astype(np.float32),
        roi=roi.astype(np.uint8),
        effect=float(effect),
        shift=tuple(float(v) for v in shift),
        scale=float(scale),
    )


def make_affine(
    shape: Sequence[int], voxel_size: Sequence[float] = (2.5, 2.5, 2.5), oblique_deg: float = 0.0
) -> np.ndarray:
    """A rigid LAS voxel-to-world affine (x flipped, as HCP's images), centred on the grid.

    Args:
        shape: grid ``(X, Y, Z)``.
        voxel_size: ``(dx, dy, dz)`` in mm (> 0), e.g. ``(1.25, 1.25, 1.5)``.
        oblique_deg: rotation about a fixed oblique axis, degrees; 0 gives a plumb LAS grid.
            Rotation only (never shear), so sform and qform agree and SimpleITK reads it.

    Returns:
        ``(4, 4)`` float64 affine; voxel ``(shape - 1) / 2`` maps to world (0, 0, 0) mm.
    """
    axis = np.array([0.6, 0.3, 0.742])
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(float(oblique_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(a) * k + (1.0 - np.cos(a)) * (k @ k)  # Rodrigues
    linear = rot @ np.diag([-float(voxel_size[0]), float(voxel_size[1]), float(voxel_size[2])])
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ ((np.asarray(shape, dtype=np.float64) - 1.0) / 2.0)
    return affine
