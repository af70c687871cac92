"""Faithfulness of a saliency map in volume space: deletion and insertion curves.

Does the network's decision depend on the voxels a map ranks first? Remove them in steps and
recompute the subject-level probability of the mapped class with the same network on the same
slices (deletion: it should fall fast, a small area under the curve), or start from a volume with
every scored voxel removed and put them back in the map's order (insertion: it should rise fast, a
large area). Petsiuk et al. (BMVC 2018, RISE) define the curves; removal here keeps the volume in
distribution by ROAD's noisy linear imputation (:func:`~hcp_cam.cam.imputation.noisy_linear_impute`,
Rong et al., ICML 2022), not zeros or a blur.

- :class:`SubjectProbability`: volume -> the subject-level probability of one class, the mean of
  the slice softmax probabilities over a fixed set of slices (the evaluation's subject score), or
  the softmax of a 3D network on the whole volume.
- :func:`relevance_order`: the scored voxels ranked by a map, ties broken by a fixed permutation.
- :func:`deletion_insertion_curves`, :func:`curve_auc`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from hcp_cam.cam.imputation import noisy_linear_impute
from hcp_cam.transforms.slice_batch import slice_stack
from hcp_cam.transforms.slicing import Slices25Dd

__all__ = [
    "DEFAULT_STEPS",
    "SubjectProbability",
    "relevance_order",
    "emptied_volume",
    "deletion_insertion_curves",
    "curve_auc",
]

#: shares of the scored voxels removed (deletion) or restored (insertion) at each step
DEFAULT_STEPS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class SubjectProbability:
    """The subject-level probability of ``class_idx`` for a volume, by the network on fixed slices.

    Args:
        network: the classifier (put in eval mode for each call, its mode restored after).
        eval_transform: the eval chain the network was validated with; for 2D networks one with a
            ``batched`` twin (:class:`~hcp_cam.transforms.slice_batch.SliceEvalCompose`) runs each
            axis as one stack, any other chain runs slice by slice.
        brain: bool ``(X, Y, Z)`` brain mask (the eval chain's ``mask``; removal never changes it).
        class_idx: the class whose probability is returned.
        indices: axis -> slice indices (2D networks): the slices the CAM is computed on; ignored for
            3D networks (``network.spatial_dims == 3``).
        batch_size: slices per forward pass.

    Calling it with an ``(X, Y, Z)`` volume returns a float in [0, 1]: the mean over the slices of
    the softmax probability of ``class_idx`` (what evaluation reports per subject), or for a 3D
    network the softmax of the whole volume.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        eval_transform: Any,
        brain: np.ndarray,
        class_idx: int,
        indices: Mapping[int, Sequence[int]] | None = None,
        batch_size: int = 64,
    ) -> None:
        self.network = network
        self.eval_transform = eval_transform
        self.brain = np.asarray(brain, dtype=bool)
        self.class_idx = int(class_idx)
        self.spatial_dims = int(getattr(network, "spatial_dims", 2))
        self.indices = {int(a): [int(i) for i in idx] for a, idx in (indices or {}).items() if len(idx)}
        if self.spatial_dims == 2 and not self.indices:
            raise ValueError("SubjectProbability: a 2D network needs the slice indices to run on")
        self.batch_size = int(batch_size)
        p = next(network.parameters(), None)
        self.device = p.device if p is not None else torch.device("cpu")
        self.n_calls = 0

    def inputs(self, volume: np.ndarray) -> torch.Tensor:
        """The network inputs of ``volume``: ``(n_slices, 1, S, S)`` or ``(1, 1, *S)`` for 3D."""
        vol = torch.as_tensor(np.asarray(volume, dtype=np.float32))[None]
        mask = torch.from_numpy(self.brain.astype(np.float32))[None]
        if self.spatial_dims == 3:
            item = self.eval_transform({"image": MetaTensor(vol), "mask": MetaTensor(mask)})
            return torch.as_tensor(item["image"])[None]
        batched = getattr(self.eval_transform, "batched", None)
        if batched is not None:
            vol, mask = vol.to(self.device), mask.to(self.device)
            stacks = []
            for a, idx in sorted(self.indices.items()):
                index = torch.as_tensor(idx, dtype=torch.long)
                stacks.append(batched(slice_stack(vol, a, index), slice_stack(mask, a, index)))
            return torch.cat(stacks)
        wanted = {(a, i) for a, idx in self.indices.items() for i in idx}
        items = Slices25Dd("image", "mask", "mask", axes=tuple(sorted(self.indices)))(
            {"image": MetaTensor(vol), "mask": mask}
        )
        chosen = [self.eval_transform(it) for it in items if (it["axis"], it["index"]) in wanted]
        return torch.stack([torch.as_tensor(t["image"]) for t in chosen])

    def __call__(self, volume: np.ndarray) -> float:
        x = self.inputs(volume)
        was_training = self.network.training
        self.network.eval()
        total = 0.0
        try:
            with torch.no_grad():
                for s in range(0, len(x), self.batch_size):
                    logits = self.network(x[s : s + self.batch_size].to(self.device)).float()
                    total += float(torch.softmax(logits, 1)[:, self.class_idx].sum())
        finally:
            self.network.train(was_training)
        self.n_calls += 1
        return total / len(x)


def relevance_order(
    saliency: np.ndarray, domain: np.ndarray, tie_break: np.ndarray | None = None
) -> np.ndarray:
    """Flat indices of the ``domain`` voxels, most relevant (highest ``saliency``) first.

    Args:
        saliency: ``(X, Y, Z)`` map; NaN counts as least relevant.
        domain: bool ``(X, Y, Z)``, the voxels that are ranked (the voxels the map scores).
        tie_break: a float per domain voxel (e.g. a seeded uniform draw) ordering voxels of equal
            saliency, lower value first (a Grad-CAM is 0 on much of the brain); ``None`` keeps index order.

    Returns:
        int64 ``(n,)`` flat indices into the volume.
    """
    flat = np.flatnonzero(np.asarray(domain, dtype=bool))
    values = np.asarray(saliency, dtype=np.float64).reshape(-1)[flat]
    values = np.where(np.isfinite(values), values, -np.inf)
    keys = (np.arange(len(flat)) if tie_break is None else np.asarray(tie_break), -values)
    return flat[np.lexsort(keys)]


def curve_auc(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Area under a curve over the fraction axis [0, 1] (trapezoid rule at the given steps)."""
    x, y = np.asarray(fractions, dtype=float), np.asarray(values, dtype=float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def emptied_volume(
    volume: np.ndarray,
    brain: np.ndarray,
    order: np.ndarray,
    noise_std: float = 0.01,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: Sequence[int] | int = 0,
) -> np.ndarray:
    """``volume`` with every voxel of ``order`` imputed (noise from ``seed + [2]``): the end of a
    deletion curve and the start of an insertion curve, the same for every map of the volume."""
    mask = np.zeros(np.size(volume), dtype=bool)
    mask[np.asarray(order)] = True
    rng = np.random.default_rng([*np.atleast_1d(seed).astype(np.int64), 2])
    return noisy_linear_impute(volume, mask.reshape(np.shape(volume)), brain, noise_std, spacing, rng)


def deletion_insertion_curves(
    volume: np.ndarray,
    brain: np.ndarray,
    order: np.ndarray,
    probability: Callable[[np.ndarray], float],
    steps: Sequence[float] = DEFAULT_STEPS,
    noise_std: float = 0.01,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: Sequence[int] | int = 0,
    original: float | None = None,
    emptied: float | None = None,
) -> dict[str, Any]:
    """Deletion and insertion curves of one map for one volume.

    Deletion at step ``f`` removes the first ``round(f * n)`` voxels of ``order`` and imputes them
    from the rest of the brain; insertion at ``f`` keeps the first ``round(f * n)`` of ``order``
    (and every brain voxel outside it) and imputes the rest of ``order``. Deletion at 0 and
    insertion at 1 are the volume itself; deletion at 1 and insertion at 0 are the same volume,
    every voxel of ``order`` imputed, whatever the map (:func:`emptied_volume`). The noise of
    step ``k`` of each curve is drawn from ``seed + [curve, k]``: maps compared at the same step
    share their noise.

    Args:
        volume: ``(X, Y, Z)`` FA.
        brain: bool ``(X, Y, Z)`` brain mask (the imputation's neighbours).
        order: flat voxel indices, most relevant first (:func:`relevance_order`); ``n = len(order)``.
        probability: volume -> the probability of the mapped class (:class:`SubjectProbability`).
        steps: increasing fractions in [0, 1], from 0 to 1.
        noise_std, spacing: of :func:`~hcp_cam.cam.imputation.noisy_linear_impute`.
        seed: an int or a sequence of ints (e.g. ``[seed, subject hash]``).
        original: ``probability(volume)`` when already known (saves a forward pass).
        emptied: ``probability(emptied_volume(...))`` when already known (it is the same for every map).

    Returns:
        ``{"fractions", "n_voxels" (voxels removed or restored per step), "deletion", "insertion"
        (probability per step), "deletion_auc", "insertion_auc"}``.

    Raises:
        ValueError: steps not increasing from 0 to 1.
    """
    f = np.asarray(steps, dtype=float)
    if f.ndim != 1 or len(f) < 2 or f[0] != 0.0 or f[-1] != 1.0 or np.any(np.diff(f) <= 0):
        raise ValueError(f"steps must increase from 0 to 1, got {list(steps)}")
    vol = np.asarray(volume, dtype=np.float32)
    brain = np.asarray(brain, dtype=bool)
    n = len(order)
    counts = np.round(f * n).astype(int)
    base = list(np.atleast_1d(seed).astype(np.int64))
    p0 = float(probability(vol)) if original is None else float(original)
    if emptied is None:
        emptied = float(probability(emptied_volume(vol, brain, order, noise_std, spacing, seed)))

    def removed(idx: np.ndarray, curve: int, k: int) -> float:
        if len(idx) == 0:
            return p0
        if len(idx) == n:
            return float(emptied)
        mask = np.zeros(vol.size, dtype=bool)
        mask[idx] = True
        rng = np.random.default_rng([*base, curve, k])
        return float(
            probability(noisy_linear_impute(vol, mask.reshape(vol.shape), brain, noise_std, spacing, rng))
        )

    deletion = [removed(order[:c], 0, k) for k, c in enumerate(counts)]
    insertion = [removed(order[c:], 1, k) for k, c in enumerate(counts)]
    return {
        "fractions": f.tolist(),
        "n_voxels": counts.tolist(),
        "deletion": deletion,
        "insertion": insertion,
        "deletion_auc": curve_auc(f, deletion),
        "insertion_auc": curve_auc(f, insertion),
    }
