"""Diffusion-tensor fit as MONAI transforms: FA, MD, AD, RD, V1 and colour FA from a loaded DWI.

Orientation: FSL ``bvecs`` are given in the image's voxel frame (with FSL's x flip for images whose
affine has a positive determinant), so the eigenvectors, ``v1`` and ``color_fa`` are in *voxel*
axes, as DIPY and FSL ``dtifit`` give them; they are not rotated into world (RAS) space. Flipping
the sign of every direction leaves the tensor unchanged; flipping one axis mirrors ``v1``.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from hcp_cam.errors import ConfigError, InputError

from .dwi import GRADIENT_META_KEYS
from .gradients import GradientTable
from .tensor_torch import MIN_SIGNAL, fit_tensor_torch, fractional_anisotropy

__all__ = ["DTIFit", "DTIFitd", "TENSOR_METRICS", "fit_tensor_dipy", "tensor_metrics"]

# metric -> (channels, unit)
TENSOR_METRICS: dict[str, tuple[int, str]] = {
    "fa": (1, "1"),
    "md": (1, "mm^2/s"),
    "ad": (1, "mm^2/s"),
    "rd": (1, "mm^2/s"),
    "v1": (3, "unit vector, voxel axes"),
    "color_fa": (3, "|v1| * FA"),
}
BACKENDS = ("torch", "dipy")


def _check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in TENSOR_METRICS]
    if unknown or not metrics:
        raise ConfigError(f"unknown tensor metrics {unknown}; choose from {sorted(TENSOR_METRICS)}")
    return metrics


def fit_tensor_dipy(
    signal: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    b0_threshold: float = 50.0,
    min_signal: float = MIN_SIGNAL,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference fit: ``dipy.reconst.dti.TensorModel`` with its default WLS method.

    Args:
        signal: ``(V, N)`` signal. bvals: ``(N,)`` s/mm^2. bvecs: ``(N, 3)`` unit (zero for b0).

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


def _plain(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A plain ``torch.Tensor`` view (no MetaTensor bookkeeping on indexing)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


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


class DTIFit(Transform):
    """Fit the diffusion tensor inside a mask and return the requested maps.

    Args:
        metrics: any of "fa", "md", "ad", "rd" (``(1, X, Y, Z)``; diffusivities in mm^2/s), "v1"
            (``(3, X, Y, Z)``, principal eigenvector in voxel axes) and "color_fa" (``|v1| * FA``).
        backend: "torch" (batched WLS, CPU or CUDA) or "dipy" (``TensorModel`` WLS, the reference).
        device: torch device for the "torch" backend; None picks CUDA when available, else CPU.
        chunk_size: voxels fitted at once; bounds memory to a few ``(chunk_size, N)`` arrays.
        min_signal: samples are floored at it before the log, as DIPY does.
        dtype: compute dtype of the torch backend (float32 matches DIPY to ~1e-6 in FA).

    Voxels outside the mask, and voxels whose mean b0 signal is not positive or whose signal holds
    NaN/Inf, get 0 in every map (like FSL ``dtifit``); no output ever holds NaN or Inf.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        metrics: Sequence[str] | str = ("fa",),
        backend: str = "torch",
        device: str | torch.device | None = None,
        chunk_size: int = 200_000,
        min_signal: float = MIN_SIGNAL,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.metrics = _check_metrics(metrics)
        if backend not in BACKENDS:
            raise ConfigError(f"unknown tensor-fit backend {backend!r}; choose from {BACKENDS}")
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        self.fit_backend = backend
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ConfigError(f"invalid torch device {device!r}: {e}") from e
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for but CUDA is not available")
        self.chunk_size, self.min_signal, self.dtype = int(chunk_size), float(min_signal), dtype

    def __call__(
        self,
        dwi: torch.Tensor,
        mask: torch.Tensor | np.ndarray | None = None,
        gradients: GradientTable | None = None,
    ) -> dict[str, MetaTensor]:
        """Fit one DWI.

        Args:
            dwi: ``(N, X, Y, Z)`` signal; a ``MetaTensor`` from :class:`LoadDWI` carries its gradient
                table in ``meta``.
            mask: ``(1, X, Y, Z)`` or ``(X, Y, Z)``, nonzero = fit; None fits every voxel.
            gradients: overrides the table in ``dwi.meta``.

        Returns:
            metric name -> ``MetaTensor`` float32 ``(1 or 3, X, Y, Z)`` with the DWI's affine and meta
            (minus the gradient table; ``meta["metric"]`` and ``meta["units"]`` added).

        Raises:
            InputError: no gradient table, or shapes of DWI, table and mask disagree.
        """
        name = getattr(dwi, "meta", {}).get("filename_or_obj") if isinstance(dwi, MetaTensor) else None
        bvals, bvecs, b0_mask, b0_thr = self._gradients(dwi, gradients, name)
        if dwi.ndim != 4 or dwi.shape[0] != bvals.shape[0]:
            raise InputError(
                f"DWI must be (N, X, Y, Z) with N = {bvals.shape[0]} volumes, got {tuple(dwi.shape)}", name
            )
        spatial = tuple(dwi.shape[1:])
        sel = self._fit_mask(dwi, mask, b0_mask, spatial, name)
        flat_idx = torch.nonzero(torch.as_tensor(sel).reshape(-1)).squeeze(1)  # (V,) voxel numbers
        vol = _plain(dwi).permute(1, 2, 3, 0)  # a view: gather voxels without copying the whole DWI
        # LoadDWI keeps the file's (X, Y, Z, N) layout: rows of a flat view are gathered fastest
        rows = vol.reshape(-1, vol.shape[-1]) if vol.is_contiguous() else None
        xyz = None if rows is not None else torch.stack(torch.unravel_index(flat_idx, spatial))

        outs = {m: torch.zeros((TENSOR_METRICS[m][0], *spatial), dtype=torch.float32) for m in self.metrics}
        flat_outs = {m: t.view(t.shape[0], -1) for m, t in outs.items()}
        for start in range(0, flat_idx.shape[0], self.chunk_size):
            idx = flat_idx[start : start + self.chunk_size]
            if rows is not None:
                signal = rows.index_select(0, idx)  # (V, N), a copy
            else:
                sub = xyz[:, start : start + self.chunk_size]
                signal = vol[sub[0], sub[1], sub[2]]
            finite = _finite_rows(signal)
            if not bool(finite.all()):
                signal[~finite] = 0.0
            if self.fit_backend == "torch":
                evals, evecs = fit_tensor_torch(
                    signal, bvals, bvecs, self.min_signal, self.device, self.dtype, self.chunk_size
                )
            else:
                ev, evc = fit_tensor_dipy(signal.double().numpy(), bvals, bvecs, b0_thr, self.min_signal)
                evals, evecs = torch.from_numpy(ev), torch.from_numpy(evc)
            del signal
            for m, values in tensor_metrics(evals, evecs, self.metrics).items():
                values = torch.nan_to_num(values.float(), nan=0.0, posinf=0.0, neginf=0.0)
                values = values * finite.reshape(-1, *([1] * (values.ndim - 1)))
                flat_outs[m].index_copy_(1, idx, values.reshape(values.shape[0], -1).T)
        return {m: self._wrap(t, dwi, m) for m, t in outs.items()}

    @staticmethod
    def _gradients(dwi: torch.Tensor, gradients: GradientTable | None, name: str | None):
        if gradients is not None:
            return (
                np.asarray(gradients.bvals),
                np.asarray(gradients.bvecs),
                np.asarray(gradients.b0_mask),
                gradients.b0_threshold,
            )
        meta = dwi.meta if isinstance(dwi, MetaTensor) else {}
        if "bvals" not in meta or "bvecs" not in meta:
            raise InputError("DWI has no gradient table (load it with LoadDWI or pass gradients=)", name)
        bvals = np.asarray(meta["bvals"], dtype=np.float64).reshape(-1)
        bvecs = np.asarray(meta["bvecs"], dtype=np.float64).reshape(-1, 3)
        b0_mask = np.asarray(meta.get("b0_mask", bvals <= 50.0), dtype=bool).reshape(-1)
        return bvals, bvecs, b0_mask, 50.0

    @staticmethod
    def _fit_mask(dwi, mask, b0_mask: np.ndarray, spatial: tuple[int, ...], name: str | None) -> torch.Tensor:
        if mask is None:
            sel = torch.ones(spatial, dtype=torch.bool)
        else:
            m = _plain(mask)
            if m.ndim == 4 and m.shape[0] == 1:
                m = m[0]
            if tuple(m.shape) != spatial:
                raise InputError(
                    f"mask shape {tuple(m.shape)} does not match the DWI's spatial shape {spatial}", name
                )
            sel = m != 0
        # a voxel without positive b0 signal has no tensor; FA 0 there, as FSL dtifit gives
        b0 = _plain(dwi)[torch.from_numpy(np.flatnonzero(b0_mask))].float().mean(0)
        return sel & (b0 > 0)

    @staticmethod
    def _wrap(t: torch.Tensor, dwi: torch.Tensor, metric: str) -> MetaTensor:
        if not isinstance(dwi, MetaTensor):
            return MetaTensor(t)
        meta = {k: copy.deepcopy(v) for k, v in dwi.meta.items() if k not in (*GRADIENT_META_KEYS, "affine")}
        meta.update(metric=metric, units=TENSOR_METRICS[metric][1])
        return MetaTensor(t, affine=dwi.affine.clone(), meta=meta)


class DTIFitd(MapTransform):
    """Dictionary version of :class:`DTIFit`: reads ``d[key]`` and ``d[mask_key]``, writes the maps.

    Maps go to ``d["fa"]``, ``d["md"]``, ... (with several keys: ``d[f"{key}_fa"]``, ...).

    Args:
        keys: DWI key(s), ``MetaTensor (N, X, Y, Z)`` with a gradient table in ``meta``.
        mask_key: key of the ``(1, X, Y, Z)`` mask; None or absent fits every voxel.
        metrics, backend, device, chunk_size, min_signal, dtype: see :class:`DTIFit`.
        allow_missing_keys: skip absent DWI keys instead of raising.
    """

    backend = DTIFit.backend

    def __init__(
        self,
        keys: KeysCollection = "dwi",
        mask_key: str | None = "mask",
        metrics: Sequence[str] | str = ("fa",),
        backend: str = "torch",
        device: str | torch.device | None = None,
        chunk_size: int = 200_000,
        min_signal: float = MIN_SIGNAL,
        dtype: torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.fitter = DTIFit(metrics, backend, device, chunk_size, min_signal, dtype)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        several = len(self.keys) > 1
        for key in self.key_iterator(d):
            mask = d.get(self.mask_key) if self.mask_key is not None else None
            for metric, value in self.fitter(d[key], mask).items():
                d[f"{key}_{metric}" if several else metric] = value
        return d
