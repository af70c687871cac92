"""Tensor maps of a whole DWI: the functional layer under :class:`~hcp_cam.transforms.DTIFit`.

Imports torch and numpy only (DIPY only inside :func:`fit_tensor_dipy`, MONAI never), so that
``hcp-cam fa`` does not pay MONAI's start-up. :func:`fit_dti_maps` takes a channel-first
``(N, X, Y, Z)`` tensor and a gradient table and returns plain ``(C, X, Y, Z)`` float32 maps;
:class:`~hcp_cam.transforms.DTIFit` wraps it and puts the DWI's affine and meta around them.

Orientation: FSL ``bvecs`` are given in the image's voxel frame (with FSL's x flip for images whose
affine has a positive determinant), so the eigenvectors, ``v1`` and ``color_fa`` are in *voxel*
axes, as DIPY and FSL ``dtifit`` give them; they are not rotated into world (RAS) space. Flipping
the sign of every direction leaves the tensor unchanged; flipping one axis mirrors ``v1``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from hcp_cam.errors import ConfigError, InputError

from .dti_options import BACKENDS, TENSOR_METRICS, check_backend, check_metrics
from .tensor_torch import MIN_SIGNAL, fit_tensor_torch, fractional_anisotropy

__all__ = [
    "TENSOR_METRICS",
    "BACKENDS",
    "check_metrics",
    "resolve_device",
    "fit_tensor_dipy",
    "tensor_metrics",
    "fit_dti_maps",
]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None picks CUDA when available, else the CPU.

    Raises:
        ConfigError: not a device name, or CUDA asked for where there is none.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"invalid torch device {device!r}: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    return dev


def fit_tensor_dipy(
    signal: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    b0_threshold: float = 50.0,
    min_signal: float = MIN_SIGNAL,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference fit: ``dipy.reconst.dti.TensorModel`` with its default WLS method.

    Args:
        signal: ``(V, N)`` signal. bvals: ``(N,)`` s/mm^2. bvecs: ``(N, 3)`` unit (zero rows for
            b0 volumes without a direction).

    Returns:
        ``(evals (V, 3), evecs (V, 3, 3))`` float64, mm^2/s, descending, eigenvectors as columns.
    """
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    gtab = gradient_table(
        np.asarray(bvals, dtype=np.float64), bvecs=np.asarray(bvecs), b0_threshold=b0_threshold
    )
    fit = TensorModel(gtab, fit_method="WLS", min_signal=min_signal).fit(np.asarray(signal, dtype=np.float64))
    return np.asarray(fit.evals, dtype=np.float64), np.asarray(fit.evecs, dtype=np.float64)


def tensor_metrics(
    evals: torch.Tensor, evecs: torch.Tensor, metrics: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Scalar and vector maps of fitted tensors.

    Args:
        evals: ``(V, 3)`` eigenvalues in mm^2/s, descending. evecs: ``(V, 3, 3)``, columns.
        metrics: names from :data:`TENSOR_METRICS`.

    Returns:
        name -> ``(V,)`` (fa, md, ad, rd) or ``(V, 3)`` (v1, color_fa) float64 tensors.
    """
    fa = fractional_anisotropy(evals)
    v1 = evecs[:, :, 0]
    table = {
        "fa": lambda: fa,
        "md": lambda: evals.mean(-1),
        "ad": lambda: evals[:, 0],
        "rd": lambda: 0.5 * (evals[:, 1] + evals[:, 2]),
        "v1": lambda: v1,
        "color_fa": lambda: v1.abs() * fa[:, None],
    }
    return {m: table[m]() for m in metrics}


def _finite_rows(signal: torch.Tensor) -> torch.Tensor:
    """``(V,)`` True where a row of ``signal`` ``(V, N)`` holds no NaN/Inf.

    A row sum is finite unless the row holds NaN/Inf (or overflows): only those rows are checked
    element by element, which saves a full pass over the signal.
    """
    finite = torch.isfinite(signal.sum(dim=1))
    if not bool(finite.all()):
        suspect = torch.nonzero(~finite).squeeze(1)
        finite[suspect] = torch.isfinite(signal[suspect]).all(dim=1)
    return finite


def _voxel_gatherer(dwi: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from C-order voxel numbers ``(V,)`` to their signal ``(V, N)`` (a copy).

    Reads the DWI where it lies, without a copy of the whole: nibabel gives the file's ``(X, Y, Z, N)``
    in Fortran order (each volume contiguous), a C-ordered ``(X, Y, Z, N)`` array has each voxel's
    series contiguous; both are gathered with one ``index_select``, any other layout voxel by voxel.
    """
    n, nx, ny, nz = dwi.shape
    by_voxel = dwi.permute(1, 2, 3, 0)
    if by_voxel.is_contiguous():  # (X, Y, Z, N) C order: rows of a flat view
        rows = by_voxel.reshape(-1, n)
        return lambda idx: rows.index_select(0, idx)

    def xyz(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # integer arithmetic, not torch.unravel_index: its argument check imports sympy (~1 s)
        return idx // (ny * nz), (idx // nz) % ny, idx % nz

    by_volume = dwi.permute(0, 3, 2, 1)
    if by_volume.is_contiguous():  # (X, Y, Z, N) Fortran order: (N, Z*Y*X) with x fastest
        cols = by_volume.reshape(n, -1)

        def gather(idx: torch.Tensor) -> torch.Tensor:
            x, y, z = xyz(idx)
            return cols.index_select(1, x + nx * (y + ny * z)).T.contiguous()

        return gather

    def gather_any(idx: torch.Tensor) -> torch.Tensor:
        x, y, z = xyz(idx)
        return by_voxel[x, y, z]

    return gather_any


def _fit_selection(
    dwi: torch.Tensor, mask: torch.Tensor | np.ndarray | None, b0_mask: np.ndarray, name: str | None
) -> torch.Tensor:
    """``(X, Y, Z)`` bool: inside the mask and a positive mean b0 signal (no tensor otherwise)."""
    spatial = tuple(dwi.shape[1:])
    if mask is None:
        sel = torch.ones(spatial, dtype=torch.bool)
    else:
        m = torch.as_tensor(mask)
        if m.ndim == 4 and m.shape[0] == 1:
            m = m[0]
        if tuple(m.shape) != spatial:
            raise InputError(
                f"mask shape {tuple(m.shape)} does not match the DWI's spatial shape {spatial}", name
            )
        sel = m != 0
        if not bool(sel.any()):
            raise InputError("the brain mask is empty (expected nonzero brain voxels, found none)", name)
    # a voxel without positive b0 signal has no tensor; FA 0 there, as FSL dtifit gives
    b0 = dwi[torch.from_numpy(np.flatnonzero(b0_mask))].float().mean(0)
    sel = sel & (b0 > 0)
    if not bool(sel.any()):
        top = float(torch.nan_to_num(b0, nan=-np.inf).max())
        where = "inside the mask " if mask is not None else ""
        raise InputError(
            f"no voxel {where}has a positive b0 signal (largest mean b0 {top:g}): expected a DWI with "
            "positive signal in the brain, found an all-zero or negative image",
            name,
        )
    return sel


def fit_dti_maps(
    dwi: torch.Tensor,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    b0_mask: np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    metrics: Sequence[str] = ("fa",),
    backend: str = "torch",
    device: str | torch.device | None = "cpu",
    chunk_size: int = 200_000,
    min_signal: float = MIN_SIGNAL,
    dtype: torch.dtype = torch.float32,
    b0_threshold: float = 50.0,
    name: str | os.PathLike | None = None,
) -> dict[str, torch.Tensor]:
    """Fit the diffusion tensor inside a mask and return the requested maps.

    Args:
        dwi: ``(N, X, Y, Z)`` signal (a plain tensor; a channel-first view of an ``(X, Y, Z, N)``
            array is gathered fastest).
        bvals: ``(N,)`` s/mm^2 as given. bvecs: ``(N, 3)`` unit directions in the voxel frame.
        b0_mask: ``(N,)`` bool, the b0 volumes (their mean decides which voxels have a tensor).
        mask: ``(1, X, Y, Z)`` or ``(X, Y, Z)``, nonzero = fit; None fits every voxel.
        metrics: names from :data:`TENSOR_METRICS`.
        backend: "torch" (batched WLS, CPU or CUDA) or "dipy" (``TensorModel`` WLS, the reference).
        device: torch device of the "torch" backend (on a CPU the fit uses torch's thread count,
            as a pool of single-threaded tasks; the voxel gathers run on one thread).
        chunk_size: voxels fitted at once; bounds memory to a few ``(chunk_size, N)`` arrays.
        min_signal: samples are floored at it before the log, as DIPY does.
        dtype: compute dtype of the torch backend (float32 matches DIPY to ~1e-6 in FA).
        b0_threshold: passed to DIPY's gradient table (labels only; the fit uses every b as given).
        name: the DWI's file, named in errors.

    Returns:
        metric -> ``(C, X, Y, Z)`` float32 (C = 1, or 3 for v1 and color_fa), on the CPU. Voxels
        outside the mask, without positive mean b0 signal or with NaN/Inf samples are 0 in every
        map (like FSL ``dtifit``); no map holds NaN or Inf.

    Raises:
        InputError: shapes of DWI, table and mask disagree; an empty mask; no voxel with positive
            b0 signal (an all-zero or all-negative DWI).
        ConfigError: unknown metric or backend.
    """
    metrics = check_metrics(metrics)
    check_backend(backend)
    name = None if name is None else os.fspath(name)
    bvals = np.asarray(bvals, dtype=np.float64).reshape(-1)
    bvecs = np.asarray(bvecs, dtype=np.float64).reshape(-1, 3)
    b0_mask = np.asarray(b0_mask, dtype=bool).reshape(-1)
    if dwi.ndim != 4 or dwi.shape[0] != bvals.shape[0]:
        raise InputError(
            f"DWI must be (N, X, Y, Z) with N = {bvals.shape[0]} volumes, got {tuple(dwi.shape)}", name
        )
    threads = torch.get_num_threads()
    # the gathers and scatters are memory-bound: one thread, which no other process can stall;
    # the fit itself runs on a pool of `threads` single-threaded tasks
    torch.set_num_threads(1)
    try:
        return _fit_maps(
            dwi, bvals, bvecs, b0_mask, mask, metrics, backend, device, chunk_size, min_signal, dtype,
            b0_threshold, name, threads,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _fit_maps(
    dwi, bvals, bvecs, b0_mask, mask, metrics, backend, device, chunk_size, min_signal, dtype, b0_threshold,
    name, threads,
) -> dict[str, torch.Tensor]:  # fmt: skip
    spatial = tuple(dwi.shape[1:])
    sel = _fit_selection(dwi, mask, b0_mask, name)
    flat_idx = torch.nonzero(sel.reshape(-1)).squeeze(1)  # (V,) voxel numbers
    gather = _voxel_gatherer(dwi)

    outs = {m: torch.zeros((TENSOR_METRICS[m][0], *spatial), dtype=torch.float32) for m in metrics}
    flat_outs = {m: t.view(t.shape[0], -1) for m, t in outs.items()}
    for start in range(0, flat_idx.shape[0], chunk_size):
        idx = flat_idx[start : start + chunk_size]
        signal = gather(idx)  # (V, N), a copy
        finite = _finite_rows(signal)
        if not bool(finite.all()):
            signal[~finite] = 0.0
        if backend == "torch":
            evals, evecs = fit_tensor_torch(
                signal, bvals, bvecs, min_signal, device, dtype, chunk_size, num_threads=threads
            )
        else:
            ev, evc = fit_tensor_dipy(signal.double().numpy(), bvals, bvecs, b0_threshold, min_signal)
            evals, evecs = torch.from_numpy(ev), torch.from_numpy(evc)
        del signal
        for m, values in tensor_metrics(evals, evecs, metrics).items():
            values = torch.nan_to_num(values.float(), nan=0.0, posinf=0.0, neginf=0.0)
            values = values * finite.reshape(-1, *([1] * (values.ndim - 1)))
            flat_outs[m].index_copy_(1, idx, values.reshape(values.shape[0], -1).T)
    return outs
