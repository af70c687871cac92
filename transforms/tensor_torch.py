"""Batched diffusion-tensor fit in torch, matching DIPY's ``TensorModel`` default (WLS) fit.

What DIPY does, and what this reproduces (``dipy.reconst.dti.wls_fit_tensor``):

1. every sample floored at ``min_signal`` (1e-4) before the log;
2. an ordinary least-squares fit of ``log S = X beta`` (pseudo-inverse of the design matrix);
3. one weighted pass with weights ``W = S_hat^2`` (the signal that OLS fit predicts), no iteration;
4. eigenvalues clipped at ``1e-6 / max(B)`` (DIPY's ``tol / -design_matrix.min()``), so none is
   negative and a voxel whose three eigenvalues are all clipped has FA 0.

The design matrix uses the b-values and directions as given (a b=5 volume counts with its
direction, as in DIPY; :func:`~hcp_cam.transforms.gradients.read_gradients` zeroes only missing
ones). Here ``b`` is scaled to ms/um^2 (``b_scale=1e-3``) so that float32 keeps DIPY's accuracy,
the weights are divided by each voxel's largest weight (WLS does not change; float32 does not
overflow), and the weighted pass solves for the correction to the OLS estimate, whose size is that
of the residuals.
``X^T W X`` for a whole block is one matrix product over the 28 distinct entries; the 7x7
systems are solved by batched Cholesky in float64; the 3x3 eigen-decomposition is in closed form
(:func:`eigh_sym3`). On a CPU the ``(voxels, N)`` work runs in place on cache-sized blocks.
Measured speeds and how to reproduce them: ``docs/performance.md``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = [
    "MIN_SIGNAL",
    "tensor_design_matrix",
    "min_diffusivity",
    "fit_tensor_torch",
    "fractional_anisotropy",
    "eigh_sym3",
]

MIN_SIGNAL = 1e-4  # DIPY's MIN_POSITIVE_SIGNAL
_EIG_TOL = 1e-6  # DIPY's tol in eig_from_lo_tri
_CPU_BLOCK_ELEMENTS = 2048 * 288  # (voxels x volumes) per CPU block: ~2.4 MB per float32 buffer
_CPU_TASK_BLOCKS = 8  # blocks per CPU task (one thread each)
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
    b = torch.tensor(np.asarray(bvals, dtype=np.float64)) * b_scale
    g = torch.tensor(np.asarray(bvecs, dtype=np.float64)).reshape(-1, 3)
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


_SYM7 = torch.triu_indices(7, 7)  # the 28 distinct entries of a symmetric 7x7 matrix


def _sym_index() -> torch.Tensor:
    """``(49,)`` position in the 28 upper-triangle entries of every entry of a 7x7 matrix."""
    pos = torch.empty((7, 7), dtype=torch.long)
    pos[_SYM7[0], _SYM7[1]] = torch.arange(_SYM7.shape[1])
    pos[_SYM7[1], _SYM7[0]] = torch.arange(_SYM7.shape[1])
    return pos.reshape(-1)


def _fit_block(
    signal: torch.Tensor,
    x: torch.Tensor,
    x_pinv_t: torch.Tensor,
    xx: torch.Tensor,
    sym: torch.Tensor,
    min_signal: float,
) -> torch.Tensor:
    """WLS tensor coefficients ``(V, 7)`` float64 of one block ``(V, N)``.

    Every ``(V, N)`` step runs in place on two buffers, so a block of a few thousand voxels stays in
    the CPU cache; ``X^T W X`` is one product with the 28 distinct entries of ``x_n x_n^T``.
    """
    y = signal.clamp_min(min_signal).log_()
    beta_ols = y @ x_pinv_t  # (V, 7)
    lp2 = (2.0 * beta_ols) @ x.T  # (V, N): twice the log of the signal OLS predicts
    r = y.add_(lp2, alpha=-0.5)  # residual y - X beta_ols, in y's buffer
    # W = S_hat^2 divided by the voxel's largest weight: the WLS solution does not change
    w = lp2.sub_(lp2.amax(dim=1, keepdim=True)).exp_()
    n7 = x.shape[1]
    xtwx = (w @ xx)[:, sym].reshape(-1, n7, n7)  # X^T W X for every voxel at once
    xtwr = r.mul_(w) @ x  # X^T W (y - X beta_ols)
    chol, info = torch.linalg.cholesky_ex(xtwx.double())
    ok = info == 0
    delta = torch.cholesky_solve(
        xtwr.double().unsqueeze(-1), torch.where(ok[:, None, None], chol, _eye7(chol))
    )
    return beta_ols.double() + delta.squeeze(-1) * ok[:, None]  # singular weights: keep OLS


def _eye7(ref: torch.Tensor) -> torch.Tensor:
    return torch.eye(ref.shape[-1], dtype=ref.dtype, device=ref.device).expand_as(ref)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.cross(a, b, dim=-1)


def eigh_sym3(t6: torch.Tensor, rtol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of many symmetric 3x3 matrices in closed form (descending).

    Batched LAPACK ``eigh`` on 3x3 matrices costs ~1.5 us per matrix on a CPU; the trigonometric
    solution of the characteristic cubic, with eigenvectors from cross products of the rows of
    ``A - lambda I``, is a few dozen element-wise operations on ``(V,)`` vectors. Matrices whose
    eigenvalues are too close for the cross products to be accurate (relative gap below ``rtol``,
    e.g. isotropic or all-zero tensors) fall back to ``torch.linalg.eigh``.

    Args:
        t6: ``(V, 6)`` float64 lower triangles ``[Dxx, Dxy, Dyy, Dxz, Dyz, Dzz]`` (DIPY's order).
        rtol: smallest eigenvalue gap, relative to the largest ``|lambda|``, solved in closed form.

    Returns:
        ``(evals (V, 3), evecs (V, 3, 3))``: descending eigenvalues and unit eigenvectors as columns.
    """
    a, d, b, f, e, c = t6.unbind(-1)
    q = (a + b + c) / 3.0
    p1 = d * d + e * e + f * f
    aq, bq, cq = a - q, b - q, c - q
    p = torch.sqrt((aq * aq + bq * bq + cq * cq + 2.0 * p1) / 6.0)
    safe_p = torch.where(p > 0, p, torch.ones_like(p))
    # det((A - qI) / p) / 2 = cos(3 phi)
    det = aq * (bq * cq - e * e) - d * (d * cq - e * f) + f * (d * e - bq * f)
    r = (det / (2.0 * safe_p**3)).clamp(-1.0, 1.0)
    phi = torch.acos(r) / 3.0
    l1 = q + 2.0 * p * torch.cos(phi)
    l3 = q + 2.0 * p * torch.cos(phi + 2.0 * torch.pi / 3.0)
    l2 = 3.0 * q - l1 - l3
    evals = torch.stack([l1, l2, l3], dim=-1)

    rows = torch.stack(
        [torch.stack([a, d, f], -1), torch.stack([d, b, e], -1), torch.stack([f, e, c], -1)], 1
    )
    eye = torch.eye(3, dtype=t6.dtype, device=t6.device)

    def null_vector(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = rows - lam[:, None, None] * eye  # (V, 3, 3)
        cand = torch.stack([_cross(m[:, 0], m[:, 1]), _cross(m[:, 0], m[:, 2]), _cross(m[:, 1], m[:, 2])], 1)
        norm2 = (cand * cand).sum(-1)  # (V, 3)
        best = norm2.argmax(dim=1)
        v = cand.gather(1, best[:, None, None].expand(-1, 1, 3)).squeeze(1)
        n2 = norm2.gather(1, best[:, None]).squeeze(1)
        return v / torch.sqrt(torch.where(n2 > 0, n2, torch.ones_like(n2)))[:, None], n2

    v1, n1 = null_vector(l1)
    v3, n3 = null_vector(l3)
    v2 = _cross(v3, v1)
    evecs = torch.stack([v1, v2, v3], dim=-1)
    # |cross| ~ product of the two gaps to the other eigenvalues; below rtol^2 scale^2: use eigh
    scale2 = torch.maximum(l1.abs(), l3.abs()) ** 2
    bad = (torch.minimum(n1, n3) <= (rtol * scale2) ** 2) | (scale2 == 0)
    if bad.any():
        idx = torch.nonzero(bad).squeeze(1)
        ev, vec = torch.linalg.eigh(rows[idx])  # ascending
        evals[idx] = ev.flip(-1)
        evecs[idx] = vec.flip(-1)
    return evals, evecs


def fit_tensor_torch(
    signal: ArrayLike,
    bvals: ArrayLike,
    bvecs: ArrayLike,
    min_signal: float = MIN_SIGNAL,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    chunk_size: int = 200_000,
    num_threads: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit diffusion tensors to many voxels at once, as DIPY's default WLS fit does.

    Args:
        signal: ``(V, N)`` signal of V voxels over N volumes (any positive unit).
        bvals: ``(N,)`` b-values in s/mm^2.
        bvecs: ``(N, 3)`` unit directions (zero rows where a b0 has none), in the frame of ``evecs``.
        min_signal: samples are floored at it before the log (DIPY: 1e-4).
        device: where to compute ("cpu", "cuda", ...); None keeps the signal's device.
        dtype: float32 (fast; b is scaled so it matches DIPY within ~1e-5 in FA) or float64.
        chunk_size: voxels per batch (on a GPU; on a CPU the WLS runs on cache-sized blocks of at
            most this many voxels), bounding memory to a few ``(chunk_size, N)`` arrays.
        num_threads: CPU threads of the fit (a pool of single-threaded tasks); None: torch's own
            ``get_num_threads()``.

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
    xx = (x64[:, _SYM7[0]] * x64[:, _SYM7[1]]).to(device=dev, dtype=dtype)  # (N, 28)
    sym = _sym_index().to(dev)
    floor = min_diffusivity(bvals, bvecs)
    evals_out = torch.empty((sig.shape[0], 3), dtype=torch.float64)
    evecs_out = torch.empty((sig.shape[0], 3, 3), dtype=torch.float64)

    def fit_task(start: int, stop: int, block: int) -> None:
        beta = torch.empty((stop - start, 7), dtype=torch.float64, device=dev)
        for b0 in range(start, stop, block):  # the WLS in blocks
            b1 = min(b0 + block, stop)
            beta[b0 - start : b1 - start] = _fit_block(
                sig[b0:b1].to(device=dev, dtype=dtype), x, x_pinv_t, xx, sym, min_signal
            )
        finite = torch.isfinite(beta).all(dim=1)
        t6 = torch.where(finite[:, None], beta[:, :6], torch.zeros_like(beta[:, :6]))
        evals, evecs = eigh_sym3(t6)  # element-wise ops on vectors of the whole task
        evals_out[start:stop] = (evals * b_scale).clamp_min(floor).cpu()
        evecs_out[start:stop] = evecs.cpu()

    if dev.type != "cpu":
        for start in range(0, sig.shape[0], chunk_size):
            fit_task(start, min(start + chunk_size, sig.shape[0]), chunk_size)
        return evals_out, evecs_out
    # CPU: blocks of a few thousand voxels keep every (block, N) buffer in cache, and tasks of a
    # few blocks run on one thread each with torch's intra-op threading off: the hundreds of
    # small parallel regions it would open stall whenever another process holds a core
    block = max(1, min(chunk_size, _CPU_BLOCK_ELEMENTS // max(n, 1)))
    task = block * _CPU_TASK_BLOCKS
    spans = [(s, min(s + task, sig.shape[0])) for s in range(0, sig.shape[0], task)]
    intra_op = torch.get_num_threads()
    workers = min(intra_op if num_threads is None else int(num_threads), len(spans))
    if workers <= 1:
        for start, stop in spans:
            fit_task(start, stop, block)
        return evals_out, evecs_out
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:  # torch releases the GIL in its ops
            list(pool.map(lambda span: fit_task(*span, block), spans))
    finally:
        torch.set_num_threads(intra_op)
    return evals_out, evecs_out
