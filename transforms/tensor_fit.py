"""Diffusion-tensor fit as MONAI transforms: FA, MD, AD, RD, V1 and colour FA from a loaded DWI.

:class:`DTIFit` (array) and :class:`DTIFitd` (dictionary) are thin wrappers over
:func:`~hcp_cam.transforms.tensor_maps.fit_dti_maps`, which does the work without MONAI; they add
the DWI's affine and meta to the maps. Orientation of ``v1``: see :mod:`~hcp_cam.transforms.tensor_maps`.
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
from .tensor_maps import (
    BACKENDS,
    TENSOR_METRICS,
    check_metrics,
    fit_dti_maps,
    fit_tensor_dipy,
    resolve_device,
    tensor_metrics,
)
from .tensor_torch import MIN_SIGNAL

__all__ = ["DTIFit", "DTIFitd", "TENSOR_METRICS", "BACKENDS", "fit_tensor_dipy", "tensor_metrics"]


def _plain(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A plain ``torch.Tensor`` view (no MetaTensor bookkeeping on indexing)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


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
        self.metrics = check_metrics(metrics)
        if backend not in BACKENDS:
            raise ConfigError(f"unknown tensor-fit backend {backend!r}; choose from {BACKENDS}")
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        self.fit_backend = backend
        self.device = resolve_device(device)
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
            InputError: no gradient table; shapes of DWI, table and mask disagree; an empty mask;
                no voxel with positive b0 signal (see :func:`~hcp_cam.transforms.tensor_maps.fit_dti_maps`).
        """
        name = getattr(dwi, "meta", {}).get("filename_or_obj") if isinstance(dwi, MetaTensor) else None
        bvals, bvecs, b0_mask, b0_thr = self._gradients(dwi, gradients, name)
        outs = fit_dti_maps(
            _plain(dwi),
            bvals,
            bvecs,
            b0_mask,
            mask=None if mask is None else _plain(mask),
            metrics=self.metrics,
            backend=self.fit_backend,
            device=self.device,
            chunk_size=self.chunk_size,
            min_signal=self.min_signal,
            dtype=self.dtype,
            b0_threshold=b0_thr,
            name=name,
        )
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
