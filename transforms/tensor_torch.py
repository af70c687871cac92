"""Batched diffusion-tensor fit in torch, matching DIPY's ``TensorModel`` default (WLS) fit.

What DIPY does, and what this reproduces (``dipy.reconst.dti.wls_fit_tensor``):

1. every sample floored at ``min_signal`` (1e-4) before the log;
2. an ordinary least-squares fit of ``log S = X beta`` (pseudo-inverse of the design matrix);
3. one weighted pass with weights ``W = S_hat^2`` (the signal that OLS fit predicts), no iteration;
4. eigenvalues clipped at ``1e-6 / max(B)`` (DIPY's ``tol / -design_matrix.min()``), so none is
   negative and a voxel whose three eigenvalues are all clipped has FA 0.

The design matrix uses the b-values as given (b=5 counts with its direction, which
:func:`~hcp_cam.transforms.gradients.read_gradients` sets to zero for b0 volumes). Here ``b`` is
scaled to ms/um^2 (``b_scale=1e-3``) so that float32 keeps DIPY's accuracy, the weights are
divided by each voxel's largest weight (WLS does not change; float32 does not overflow), and the
weighted pass solves for the correction to the OLS estimate, whose size is that of the residuals.
``X^T W X`` for a whole chunk is one matrix product; the 7x7 systems are solved in float64.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "MIN_SIGNAL",
    "tensor_design_matrix",
    "min_diffusivity",
    "fit_tensor_torch",
    "fractional_anisotropy",
]

MIN_SIGNAL = 1e-4  # DIPY's MIN_POSITIVE_SIGNAL
_EIG_TOL = 1e-6  # DIPY's tol in eig_from_lo_tri
ArrayLike = np.ndarray | torch.Tensor


def tensor_design_matrix(bvals: ArrayLike, bvecs: ArrayLike, b_scale: float = 1.0) -> torch.Tensor:
    """Design matrix of the log-linear tensor model, DIPY's column order.

    Args:
        bvals: ``(N,)`` b-values in s/mm^2.
        bvecs: ``(N, 3)`` unit directions.
        b_scale: factor applied to ``bvals`` (1e-3 gives ms/um^2, so the fitted tensor is in
            um^2/ms = 1e-3 mm^2/s).

    Returns:
        ``(N, 7)`` float64 ``X`` with ``log S = X @ [Dxx, Dxy, Dyy, Dxz, Dyz, Dzz, log S0]``.
    """
    b = torch.as_tensor(np.asarray(bvals, dtype=np.float64)) * b_scale
    g = torch.as_tensor(np.asarray(bvecs, dtype=np.float64)).reshape(-1, 3)
    gx, gy, gz = g[:, 0], g[:, 1], g[:, 2]
    cols = [gx * gx, 2 * gx * gy, gy * gy, 2 * gx * gz, 2 * gy * gz, gz * gz]
    return torch.stack([-b * c for c in cols] + [torch.ones_like(b)], dim=1)


def min_diffusivity(bvals: ArrayLike, bvecs: ArrayLike) -> float:
    """DIPY's eigenvalue floor in mm^2/s: ``1e-6 / max(B)`` over the b-matrix entries and 1."""
    neg_x = -tensor_design_matrix(bvals, bvecs)  # DIPY's B, constant column included (as -1 -> 1)
    return _EIG_TOL / max(float(neg_x.max()), 1.0)


def fractional_anisotropy(evals: ArrayLike) -> ArrayLike:
    r"""Fractional anisotropy of diffusion tensors from their eigenvalues.

    Args:
        evals: ``(..., 3)`` eigenvalues (any diffusivity unit), numpy array or torch tensor.

    Returns:
        ``(...)`` FA in ``[0, 1]``, same type as ``evals``; 0 where all eigenvalues are zero.

    Notes:
        .. math::

            FA = \sqrt{\frac{1}{2}\frac{(\lambda_1-\lambda_2)^2+(\lambda_2-\lambda_3)^2
                 +(\lambda_3-\lambda_1)^2}{\lambda_1^2+\lambda_2^2+\lambda_3^2}}

        Equal eigenvalues (isotropic, or all clipped to the same floor) give 0. For non-negative
        eigenvalues FA is at most 1; it is clamped to ``[0, 1]`` against rounding.
    """
    as_numpy = isinstance(evals, np.ndarray)
    ev = torch.as_tensor(evals)
    e1, e2, e3 = ev[..., 0], ev[..., 1], ev[..., 2]
    num = (e1 - e2) ** 2 + (e2 - e3) ** 2 + (e3 - e1) ** 2
    den = (ev * ev).sum(-1)
    fa = torch.sqrt(0.5 * num / torch.where(den > 0, den, torch.ones_like(den)))
    fa = torch.where(den > 0, fa, torch.zeros_like(fa)).clamp(0.0, 1.0)
    return fa.numpy() if as_numpy else fa


def _fit_chunk(
    signal: torch.Tensor, x: torch.Tensor, x_pinv_t: torch.Tensor, xx: torch.Tensor, min_signal: float
) -> torch.Tensor:
    """WLS tensor coefficients ``(V, 7)`` float64 of one chunk ``(V, N)``."""
    y = torch.log(signal.clamp_min(min_signal))
    beta_ols = y @ x_pinv_t  # (V, 7)
    log_pred = beta_ols @ x.T  # (V, N): log of the signal OLS predicts
    # W = S_hat^2, divided by the voxel's largest weight: the WLS solution does not change
    w = torch.exp(2.0 * (log_pred - log_pred.amax(dim=1, keepdim=True)))
    n7 = x.shape[1]
    xtwx = torch.einsum("vn,nk->vk", w, xx).reshape(-1, n7, n7)  # X^T W X for every voxel at once
    xtwr = torch.einsum("vn,nk->vk", w * (y - log_pred), x)  # X^T W (y - X beta_ols)
    chol, info = torch.linalg.cholesky_ex(xtwx.double())
    ok = info == 0
    delta = torch.cholesky_solve(
        xtwr.double().unsqueeze(-1), torch.where(ok[:, None, None], chol, _eye7(chol))
    )
    beta = beta_ols.double() + delta.squeeze(-1) * ok[:, None]  # singular weights: keep OLS
    return beta


def _eye7(ref: torch.Tensor) -> torch.Tensor:
    return torch.eye(ref.shape[-1], dtype=ref.dtype, device=ref.device).expand_as(ref)


def fit_tensor_torch(
    signal: ArrayLike,
    bvals: ArrayLike,
    bvecs: ArrayLike,
    min_signal: float = MIN_SIGNAL,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    chunk_size: int = 200_000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit diffusion tensors to many voxels at once, as DIPY's default WLS fit does.

    Args:
        signal: ``(V, N)`` signal of V voxels over N volumes (any positive unit).
        bvals: ``(N,)`` b-values in s/mm^2.
        bvecs: ``(N, 3)`` unit directions (zero rows for b0), in the frame ``evecs`` will be in.
        min_signal: samples are floored at it before the log (DIPY: 1e-4).
        device: where to compute ("cpu", "cuda", ...); None keeps the signal's device.
        dtype: float32 (fast; b is scaled so it matches DIPY within ~1e-5 in FA) or float64.
        chunk_size: voxels per batch, bounding memory to a few ``(chunk_size, N)`` arrays.

    Returns:
        ``(evals, evecs)``: ``(V, 3)`` float64 eigenvalues in mm^2/s, sorted descending and
        clipped at :func:`min_diffusivity`; ``(V, 3, 3)`` float64 eigenvectors as columns
        (``evecs[v, :, 0]`` belongs to the largest). Both on the CPU.

    Raises:
        ValueError: shapes of ``signal``, ``bvals`` and ``bvecs`` disagree.
    """
    sig = torch.as_tensor(signal)
    if sig.ndim != 2:
        raise ValueError(f"signal must be (V, N), got shape {tuple(sig.shape)}")
    n = sig.shape[1]
    if np.asarray(bvals).shape != (n,) or np.asarray(bvecs).reshape(-1, 3).shape[0] != n:
        raise ValueError(
            f"signal has {n} volumes; bvals {np.asarray(bvals).shape}, bvecs {np.asarray(bvecs).shape}"
        )
    dev = torch.device(device) if device is not None else sig.device
    b_scale = 1e-3  # s/mm^2 -> ms/um^2: design entries O(1), fitted diffusivities O(1)
    x64 = tensor_design_matrix(bvals, bvecs, b_scale)
    x = x64.to(device=dev, dtype=dtype)
    x_pinv_t = torch.linalg.pinv(x64).T.contiguous().to(device=dev, dtype=dtype)
    xx = (x64[:, :, None] * x64[:, None, :]).reshape(n, -1).to(device=dev, dtype=dtype)
    floor = min_diffusivity(bvals, bvecs)
    tril = torch.tensor([[0, 1, 3], [1, 2, 4], [3, 4, 5]], device=dev)

    evals_out = torch.empty((sig.shape[0], 3), dtype=torch.float64)
    evecs_out = torch.empty((sig.shape[0], 3, 3), dtype=torch.float64)
    for start in range(0, sig.shape[0], chunk_size):
        chunk = sig[start : start + chunk_size].to(device=dev, dtype=dtype)
        beta = _fit_chunk(chunk, x, x_pinv_t, xx, min_signal)
        finite = torch.isfinite(beta).all(dim=1)
        tensor = torch.where(finite[:, None], beta, torch.zeros_like(beta))[:, tril] * b_scale  # (V, 3, 3)
        evals, evecs = torch.linalg.eigh(tensor)
        # eigh sorts ascending; DIPY gives descending with matching columns
        evals, evecs = evals.flip(-1).clamp_min(floor), evecs.flip(-1)
        stop = start + chunk.shape[0]
        evals_out[start:stop] = evals.cpu()
        evecs_out[start:stop] = evecs.cpu()
    return evals_out, evecs_out
