"""Tiny synthetic DWI acquisitions with known tensors, written as real NIfTI + FSL gradient files.

Other test modules may import these helpers (``from tests.dwi_fixtures import write_dwi`` or, with
``tests/`` on the path, ``from dwi_fixtures import write_dwi``). Every function is deterministic for
a given ``seed``; volumes are small (12x14x10 by default) so that a fit takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "DWIFiles",
    "make_affine",
    "make_gradients",
    "random_rotations",
    "tensor_signal",
    "add_rician_noise",
    "analytic_fa",
    "write_gradients",
    "write_dwi",
]


@dataclass
class DWIFiles:
    """Paths and ground truth of one written synthetic acquisition.

    Attributes:
        dwi, bvals, bvecs, mask: the written files (``mask`` is None when not written).
        affine: ``(4, 4)`` affine written to the NIfTI header.
        bvals_array: ``(N,)`` b-values, s/mm^2. bvecs_array: ``(N, 3)`` directions (zero for b0).
        mask_array: ``(X, Y, Z)`` bool brain mask (a sphere).
        evals: ``(X, Y, Z, 3)`` true eigenvalues in mm^2/s, descending (0 outside the mask).
        v1: ``(X, Y, Z, 3)`` true principal direction in voxel axes.
        fa: ``(X, Y, Z)`` analytic FA of the noise-free tensors (0 outside the mask).
        data: ``(X, Y, Z, N)`` float32 signal as written.
    """

    dwi: Path
    bvals: Path
    bvecs: Path
    mask: Path | None
    affine: np.ndarray
    bvals_array: np.ndarray
    bvecs_array: np.ndarray
    mask_array: np.ndarray
    evals: np.ndarray
    v1: np.ndarray
    fa: np.ndarray
    data: np.ndarray


def make_affine(kind: str = "ras", zooms: tuple[float, float, float] = (1.25, 1.25, 1.25)) -> np.ndarray:
    """A rigid affine (rotation x voxel sizes + translation) of the named kind.

    Args:
        kind: "ras" (diagonal), "las" (x flipped, like FSL/HCP files), "oblique" (rotated about
            two axes), "anisotropic" (diagonal with the given, unequal, zooms).
        zooms: voxel sizes in mm.
    """
    zooms = np.asarray(zooms, dtype=np.float64)
    if kind == "ras":
        rot = np.eye(3)
    elif kind == "las":
        rot = np.diag([-1.0, 1.0, 1.0])
    elif kind == "oblique":
        a, b = np.deg2rad(17.0), np.deg2rad(-9.0)
        rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
        rot = rz @ rx
    elif kind == "anisotropic":
        rot = np.eye(3)
        zooms = np.array([1.25, 2.0, 3.5]) if np.allclose(zooms, zooms[0]) else zooms
    else:
        raise ValueError(f"unknown affine kind {kind!r}")
    aff = np.eye(4)
    aff[:3, :3] = rot * zooms[None, :]
    aff[:3, 3] = [-90.0, -126.0, -72.0]
    return aff


def make_gradients(
    shells: tuple[float, ...] = (1000.0, 2000.0, 3000.0),
    n_per_shell: int = 12,
    n_b0: int = 2,
    b0_value: float = 5.0,
    jitter: float = 10.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Random unit directions on HCP-like shells, b-values jittered like HCP (990, 1005, ...).

    Returns:
        ``(bvals (N,), bvecs (N, 3))`` with b0 volumes first and zero b0 directions.
    """
    rng = np.random.default_rng(seed)
    bvals = [np.full(n_b0, b0_value)]
    bvecs = [np.zeros((n_b0, 3))]
    for b in shells:
        v = rng.normal(size=(n_per_shell, 3))
        bvecs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        bvals.append(b + rng.uniform(-jitter, jitter, n_per_shell).round())
    return np.concatenate(bvals), np.concatenate(bvecs)


def random_rotations(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 3, 3)`` random proper rotations (QR of Gaussian matrices, sign-fixed)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[det < 0, :, 0] *= -1
    return q


def tensor_signal(
    evals: np.ndarray,
    rotations: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    s0: float | np.ndarray = 1000.0,
) -> np.ndarray:
    """Noise-free signal ``S0 exp(-b g^T D g)`` of tensors ``D = R diag(evals) R^T``.

    Args:
        evals: ``(V, 3)`` eigenvalues, mm^2/s. rotations: ``(V, 3, 3)``, columns = eigenvectors.
        bvals: ``(N,)`` s/mm^2. bvecs: ``(N, 3)``. s0: scalar or ``(V,)``.

    Returns:
        ``(V, N)`` float64 signal.
    """
    d = np.einsum("vij,vj,vkj->vik", rotations, evals, rotations)
    adc = np.einsum("ni,vij,nj->vn", bvecs, d, bvecs)
    return np.asarray(s0, dtype=np.float64).reshape(-1, 1) * np.exp(-bvals[None, :] * adc)


def add_rician_noise(signal: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma``."""
    rng = np.random.default_rng(seed)
    return np.hypot(signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma, signal.shape))


def analytic_fa(evals: np.ndarray) -> np.ndarray:
    """FA from eigenvalues ``(..., 3)``, written out independently of the code under test."""
    m = evals.mean(-1, keepdims=True)
    num = np.sqrt(1.5 * ((evals - m) ** 2).sum(-1))
    den = np.sqrt((evals**2).sum(-1))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _save(data: np.ndarray, aff: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(data, aff)
    img.set_qform(aff, code=1)  # scanner-anat, as scanners write them; both codes set
    img.set_sform(aff, code=1)
    nib.save(img, str(path))


def write_gradients(
    folder: Path, bvals: np.ndarray, bvecs: np.ndarray, stem: str | None = "dwi", layout: str = "3xN"
) -> tuple[Path, Path]:
    """Write FSL gradient files: ``<stem>.bval``/``<stem>.bvec``, or ``bvals``/``bvecs`` when stem is None.

    Args:
        layout: "3xN" (FSL) or "Nx3" (how DIPY's small_64D stores them).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bval_p = folder / (f"{stem}.bval" if stem else "bvals")
    bvec_p = folder / (f"{stem}.bvec" if stem else "bvecs")
    np.savetxt(bval_p, np.asarray(bvals)[None, :], fmt="%g")
    np.savetxt(bvec_p, bvecs.T if layout == "3xN" else bvecs, fmt="%.8f")
    return bval_p, bvec_p


def write_dwi(
    folder: Path,
    shape: tuple[int, int, int] = (12, 14, 10),
    affine: np.ndarray | str = "ras",
    stem: str | None = "dwi",
    shells: tuple[float, ...] = (1000.0, 2000.0, 3000.0),
    n_per_shell: int = 12,
    noise_sigma: float = 0.0,
    write_mask: bool = True,
    zero_voxels: int = 0,
    seed: int = 0,
) -> DWIFiles:
    """Write a synthetic single-tensor DWI (spherical brain, zero background) with its files.

    Args:
        folder: where to write ``<stem>.nii.gz``, ``<stem>.bval``, ``<stem>.bvec``,
            ``<stem>_mask.nii.gz`` (``data.nii.gz``, ``bvals``, ``bvecs``, ``nodif_brain_mask.nii.gz``
            HCP-style when ``stem`` is None).
        shape: spatial shape ``(X, Y, Z)``.
        affine: a ``(4, 4)`` array or a kind for :func:`make_affine`.
        noise_sigma: Rician noise level (S0 = 1000); 0 writes the exact signal.
        zero_voxels: this many voxels inside the mask get an all-zero signal.
        seed: seeds tensors, directions and noise.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    aff = make_affine(affine) if isinstance(affine, str) else np.asarray(affine, dtype=np.float64)
    bvals, bvecs = make_gradients(shells, n_per_shell=n_per_shell, seed=seed)
    rng = np.random.default_rng(seed + 1)
    grid = np.stack(np.meshgrid(*[np.arange(s) - (s - 1) / 2 for s in shape], indexing="ij"), -1)
    mask = np.linalg.norm(grid / (np.asarray(shape) / 2), axis=-1) <= 0.95  # ellipsoidal brain
    nvox = int(mask.sum())
    # white-matter-like to CSF-like tensors: l1 in [0.8, 2.2], l2, l3 below it (1e-3 mm^2/s)
    l1 = rng.uniform(0.8e-3, 2.2e-3, nvox)
    l2 = l1 * rng.uniform(0.15, 1.0, nvox)
    l3 = l2 * rng.uniform(0.5, 1.0, nvox)
    ev = np.stack([l1, l2, l3], -1)
    rot = random_rotations(nvox, seed=seed + 2)
    s0 = rng.uniform(800.0, 1200.0, nvox)
    sig = tensor_signal(ev, rot, bvals, bvecs, s0)
    if noise_sigma > 0:
        sig = add_rician_noise(sig, noise_sigma, seed=seed + 3)
    if zero_voxels:
        sig[rng.choice(nvox, zero_voxels, replace=False)] = 0.0
    data = np.zeros((*shape, bvals.shape[0]), dtype=np.float32)
    data[mask] = sig
    evals = np.zeros((*shape, 3))
    evals[mask] = ev
    v1 = np.zeros((*shape, 3))
    v1[mask] = rot[:, :, 0]
    name = f"{stem}.nii.gz" if stem else "data.nii.gz"
    dwi_p = folder / name
    _save(data, aff, dwi_p)
    bval_p, bvec_p = write_gradients(folder, bvals, bvecs, stem=stem)
    mask_p = None
    if write_mask:
        mask_p = folder / (f"{stem}_mask.nii.gz" if stem else "nodif_brain_mask.nii.gz")
        _save(mask.astype(np.uint8), aff, mask_p)
    return DWIFiles(
        dwi=dwi_p,
        bvals=bval_p,
        bvecs=bvec_p,
        mask=mask_p,
        affine=aff,
        bvals_array=bvals,
        bvecs_array=bvecs,
        mask_array=mask,
        evals=evals,
        v1=v1,
        fa=analytic_fa(evals),
        data=data,
    )
