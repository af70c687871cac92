"""Class Activation Maps in the 3D voxel grid of the FA map (written out by :mod:`hcp_cam.cam.nifti`).

A 2D network sees slices: :func:`cam_volume` cuts the FA volume along each axis, runs the CAM
inferer on every selected slice, undoes the slice transforms (pad, resize) with MONAI's inverse, puts
the maps back with :func:`~hcp_cam.transforms.slicing.stack_slices` and fuses the axes. Slices the
network was not trained on are left out (marked unknown), because a network asked about slices it
never saw gives its strongest maps there (docs/architecture.md, Lessons, "Whole-brain CAM and the
slices the network never saw"). The fused map is known where every axis covers a voxel (``coverage="all"``), so that
voxels seen by one axis only do not compete with a noisier mean of one map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from hcp_cam.errors import InputError
from hcp_cam.transforms.augment import map_to_slice
from hcp_cam.transforms.slice_batch import SliceEvalCompose, slice_stack
from hcp_cam.transforms.slicing import Slices25Dd, slice_indices, stack_slices

__all__ = ["CAMVolume", "cam_volume", "FUSE_MODES", "COVERAGE_MODES"]

FUSE_MODES = ("mean", "max")
COVERAGE_MODES = ("all", "any")


@dataclass
class CAMVolume:
    """A CAM in the FA voxel grid.

    Attributes:
        fused: float32 ``(X, Y, Z)``, the axes fused (0 outside the brain and where no axis is known).
        per_axis: slicing axis -> float32 ``(X, Y, Z)`` map of that axis alone (0 where not covered).
        covered: slicing axis -> bool ``(X, Y, Z)``, True on the slices that axis computed.
        class_idx: the class the maps are for (an int, or what was passed to the inferer).
        logits_mean: float32 ``(C,)``, the network's logits averaged over every slice (or the volume).
        known: bool ``(X, Y, Z)``, brain voxels covered by at least one axis (all brain for 3D nets).
    """

    fused: torch.Tensor
    per_axis: dict[int, torch.Tensor] = field(default_factory=dict)
    covered: dict[int, torch.Tensor] = field(default_factory=dict)
    class_idx: Any = None
    logits_mean: torch.Tensor | None = None
    known: torch.Tensor | None = None


def _source_name(x: Any) -> str | None:
    return x.meta.get("filename_or_obj") if isinstance(x, MetaTensor) else None


def _check_inputs(fa: Any, mask: Any) -> tuple[MetaTensor, torch.Tensor]:
    """FA as ``(1, X, Y, Z)`` float32 MetaTensor and the brain as ``(1, X, Y, Z)`` float32 0/1."""
    path = _source_name(fa)
    fa_t = fa if isinstance(fa, MetaTensor) else MetaTensor(torch.as_tensor(np.asarray(fa)))
    if fa_t.ndim == 3:
        fa_t = fa_t[None]
    if fa_t.ndim != 4 or fa_t.shape[0] != 1:
        raise InputError(f"FA must be (1, X, Y, Z) or (X, Y, Z), got shape {tuple(fa_t.shape)}", path)
    fa_t = fa_t.to(torch.float32)
    if mask is None:
        brain = (fa_t.as_tensor() != 0).to(torch.float32)
    else:
        m = torch.as_tensor(mask.as_tensor() if isinstance(mask, MetaTensor) else np.asarray(mask))
        if m.ndim == 3:
            m = m[None]
        mpath = _source_name(mask) or path
        if tuple(m.shape) != tuple(fa_t.shape):
            raise InputError(
                f"mask grid {tuple(m.shape[1:])} differs from the FA grid {tuple(fa_t.shape[1:])}", mpath
            )
        if isinstance(mask, MetaTensor) and not np.allclose(
            np.asarray(mask.affine, dtype=float), np.asarray(fa_t.affine, dtype=float), atol=1e-4
        ):
            raise InputError("mask affine differs from the FA affine (not the same voxel grid)", mpath)
        brain = (m != 0).to(torch.float32)
    if not brain.any():
        raise InputError(
            "brain mask is empty (no nonzero voxel): no CAM can be computed", _source_name(mask) or path
        )
    return fa_t, brain


def _select_maps(maps: torch.Tensor, class_idx: Any) -> torch.Tensor:
    """``(B, 1, *S)`` maps of the wanted class from the inferer's ``(B, n_maps, *S)``."""
    if maps.shape[1] == 1:
        return maps
    if isinstance(class_idx, int):
        return maps[:, class_idx : class_idx + 1]
    raise ValueError(
        f"the inferer returned {maps.shape[1]} maps per sample; pass an int class_idx to pick one"
    )


def _call_inferer(inferer: Any, x: torch.Tensor, network: torch.nn.Module, class_idx: Any) -> Any:
    return inferer(x, network) if class_idx is None else inferer(x, network, class_idx=class_idx)


def _fuse(
    vols: list[torch.Tensor], covs: list[torch.Tensor], fuse: str, coverage: str = "all"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse per-axis maps over the axes that cover each voxel; 0 where the voxel is not known.

    ``coverage="all"``: a voxel is known only where every axis that computed any slice covers it;
    ``"any"``: where at least one does. Why "all" by default: with slices restricted to the trained
    range, a voxel on one axis's slab only gets the mean of one map, whose spread is wider than that
    of a mean of three, so its extremes win the peak and the box over the voxels every axis saw
    (docs/results.md: pointing game 3/12 with "any" against 12/12 with "all" on the demo data).
    """
    v = torch.stack(vols)
    c = torch.stack(covs)
    count = c.sum(0)
    computed = int(c.flatten(1).any(1).sum())
    known = count >= (max(computed, 1) if coverage == "all" else 1)
    if fuse == "mean":
        fused = (v * c).sum(0) / count.clamp(min=1)
    else:
        fused = torch.where(c, v, torch.tensor(float("-inf"))).amax(0)
    fused = torch.where(known, fused, torch.zeros(()))
    return fused.to(torch.float32), known


def cam_volume(
    fa: MetaTensor | torch.Tensor | np.ndarray,
    mask: MetaTensor | torch.Tensor | np.ndarray | None,
    network: torch.nn.Module,
    inferer: Any,
    eval_transform: Compose,
    axes: Sequence[int] = (0, 1, 2),
    selection: str = "mask",
    batch_size: int = 64,
    trained_indices: dict[int, list[int]] | None = None,
    fuse: str = "mean",
    class_idx: Any = None,
    device: str | torch.device | None = None,
    k: int = 16,
    stride: int = 1,
    min_brain_fraction: float = 0.0,
    coverage: str = "all",
    batched: bool = True,
) -> CAMVolume:
    """CAM of one FA volume, in its voxel grid.

    2D networks: every slice selected along each of ``axes`` (``selection``, ``k``, ``stride``,
    ``min_brain_fraction`` as in :func:`~hcp_cam.transforms.slicing.slice_indices`; with
    ``trained_indices``, only those slices) goes through ``eval_transform`` and, in batches, through
    ``inferer``; its map is brought back to the slice with :func:`~hcp_cam.transforms.augment.map_to_slice`
    and stacked into the volume. 3D networks (``network.spatial_dims == 3``): the volume goes through
    ``eval_transform`` (e.g. resize + pad to the net input, invertible) and its map is inverted back.

    Args:
        fa: FA map ``(1, X, Y, Z)`` (a ``MetaTensor`` to name its file in errors).
        mask: brain mask on the same grid, or ``None`` (brain = nonzero FA).
        network: the classifier; put in eval mode during the call, its mode restored after.
        inferer: callable ``inferer(inputs (B, 1, *S), network[, class_idx=...])`` returning an object
            with ``logits (B, C)`` and ``maps (B, n_maps, *S)`` at input size (``CAMInferer``).
        eval_transform: the eval chain of :func:`~hcp_cam.transforms.augment.build_slice_transforms`,
            acting on items with keys ``image`` and ``mask``.
        axes: slicing axes (2D networks).
        selection: ``"mask"`` (every slice with brain) or ``"centre"``.
        batch_size: slices per inferer call.
        trained_indices: axis -> the slice indices the network was trained on; slices outside are
            not computed and stay unknown (not covered). An axis absent from the dict is unknown.
        fuse: ``"mean"`` or ``"max"`` over the axes that cover a voxel.
        coverage: which voxels the fused map knows (2D networks): ``"all"`` (default) where every
            axis that computed slices covers the voxel, ``"any"`` where at least one does. With
            ``trained_indices`` of the centre slabs, ``"all"`` is the block where the three slabs
            cross; the per-axis maps keep each slab whole. Unknown voxels are 0 in ``fused``.
        class_idx: class whose map is computed; ``None`` = the volume's predicted class, the argmax
            of the logits averaged over all slices (one class for the whole volume). A non-int value
            (e.g. ``"difference"``) is passed to the inferer as is.
        device: where the network runs (default: where its parameters are).
        k, stride, min_brain_fraction: slice selection, see ``slice_indices``.
        batched: when ``eval_transform`` is a :class:`~hcp_cam.transforms.slice_batch.SliceEvalCompose`
            (the chain of ``build_slice_transforms``), cut the slices of each axis as one stack and run
            its ``batched`` twin and inverse on the network's device (same maps within float32
            rounding, ~10x less time); ``False``: the MONAI chain and ``Invertd`` slice by slice.

    Returns:
        :class:`CAMVolume`; every map is 0 outside the brain.

    Raises:
        InputError: the mask grid differs from the FA grid, or the mask is empty.
        ValueError: bad ``fuse`` or ``coverage``, or no slice to compute for a 2D network.
    """
    if fuse not in FUSE_MODES:
        raise ValueError(f"fuse must be one of {FUSE_MODES}, got {fuse!r}")
    if coverage not in COVERAGE_MODES:
        raise ValueError(f"coverage must be one of {COVERAGE_MODES}, got {coverage!r}")
    fa_t, brain = _check_inputs(fa, mask)
    shape = tuple(int(s) for s in fa_t.shape[1:])
    if device is None:
        p = next(network.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = network.training
    network.eval()
    try:
        if getattr(network, "spatial_dims", 2) == 3:
            result = _cam_volume_3d(fa_t, brain, network, inferer, eval_transform, class_idx, device)
        elif batched and isinstance(eval_transform, SliceEvalCompose):
            result = _cam_volume_2d_batched(
                fa_t, brain, network, inferer, eval_transform.batched, axes, selection, batch_size,
                trained_indices, fuse, class_idx, device, k, stride, min_brain_fraction, coverage,
            )  # fmt: skip
        else:
            result = _cam_volume_2d(
                fa_t, brain, network, inferer, eval_transform, axes, selection, batch_size,
                trained_indices, fuse, class_idx, device, k, stride, min_brain_fraction, coverage,
            )  # fmt: skip
    finally:
        network.train(was_training)
    inside = brain[0].bool()
    result.fused = torch.where(inside, result.fused, torch.zeros(()))
    result.per_axis = {a: torch.where(inside, v, torch.zeros(())) for a, v in result.per_axis.items()}
    result.known = result.known & inside
    assert result.fused.shape == shape
    return result


def _predicted_class(batches: list[torch.Tensor], network: torch.nn.Module, device: Any) -> torch.Tensor:
    """Logits averaged over every input (a plain forward pass, no maps)."""
    total, n = None, 0
    with torch.no_grad():
        for x in batches:
            logits = network(x.to(device)).detach().cpu().to(torch.float32)
            total = logits.sum(0) if total is None else total + logits.sum(0)
            n += logits.shape[0]
    return total / n


def _cam_volume_2d(
    fa, brain, network, inferer, eval_transform, axes, selection, batch_size,
    trained_indices, fuse, class_idx, device, k, stride, min_brain_fraction, coverage,
) -> CAMVolume:  # fmt: skip
    shape = tuple(int(s) for s in fa.shape[1:])
    chosen = _computed_indices(shape, brain, axes, selection, k, stride, min_brain_fraction, trained_indices)
    allowed = {(a, i) for a, idx in chosen.items() for i in idx}
    slicer = Slices25Dd("image", "mask", selection, k, stride, axes, min_brain_fraction)
    items = [it for it in slicer({"image": fa, "mask": brain}) if (it["axis"], it["index"]) in allowed]
    transformed = [eval_transform(it) for it in items]
    batches = [
        torch.stack([t["image"].as_tensor() for t in transformed[s : s + batch_size]])
        for s in range(0, len(transformed), batch_size)
    ]
    logits_mean = None
    if class_idx is None:
        logits_mean = _predicted_class(batches, network, device)
        class_idx = int(logits_mean.argmax())
    maps: dict[int, list[torch.Tensor]] = {a: [] for a in axes}
    indices: dict[int, list[int]] = {a: [] for a in axes}
    logit_sum, pos = None, 0
    for x in batches:
        out = _call_inferer(inferer, x.to(device), network, class_idx)
        logits = out.logits.detach().cpu().to(torch.float32)
        logit_sum = logits.sum(0) if logit_sum is None else logit_sum + logits.sum(0)
        chosen = _select_maps(out.maps.detach().cpu(), class_idx)
        for b in range(chosen.shape[0]):
            item, t = items[pos], transformed[pos]
            maps[item["axis"]].append(map_to_slice(chosen[b], t, eval_transform)[0])
            indices[item["axis"]].append(item["index"])
            pos += 1
    if logits_mean is None:
        logits_mean = logit_sum / len(items)
    per_axis, covered = {}, {}
    for a in axes:
        per_axis[a], covered[a] = stack_slices(maps[a], a, indices[a], shape)
    fused, known = _fuse(list(per_axis.values()), list(covered.values()), fuse, coverage)
    return CAMVolume(fused, per_axis, covered, class_idx, logits_mean, known)


def _computed_indices(
    shape, brain, axes, selection, k, stride, min_brain_fraction, trained_indices
) -> dict[int, list[int]]:  # fmt: skip
    """Axis -> the slice indices to compute: the selection, restricted to ``trained_indices`` when given.

    Raises:
        ValueError: no slice is left on any axis.
    """
    chosen = {}
    for a in axes:
        idx = slice_indices(shape, brain[0], a, selection, k, stride, min_brain_fraction)
        if trained_indices is not None:
            allowed = {int(i) for i in trained_indices.get(a, [])}
            idx = [i for i in idx if i in allowed]
        if idx:
            chosen[a] = idx
    if not chosen:
        raise ValueError("no slice to compute: the selection and trained_indices leave nothing")
    return chosen


def _cam_volume_2d_batched(
    fa, brain, network, inferer, batched, axes, selection, batch_size,
    trained_indices, fuse, class_idx, device, k, stride, min_brain_fraction, coverage,
) -> CAMVolume:  # fmt: skip
    """:func:`_cam_volume_2d` with each axis's slices cut, transformed and inverted as one stack.

    For the volume's predicted class with ``CAMInferer("cam")``, one pass gives the logits and the maps of
    every class (CAM weighs the same features per class), and the class is picked afterwards; other
    inferers (Grad-CAM needs its class before the backward pass) get a forward pass for the class first.
    The maps wait at input size until the class is known: ``slices x classes x S^2`` floats on ``device``
    (32 MB for 438 HCP slices, 2 classes, S = 96).
    """
    shape = tuple(int(s) for s in fa.shape[1:])
    chosen = _computed_indices(shape, brain, axes, selection, k, stride, min_brain_fraction, trained_indices)
    vol = torch.as_tensor(fa.as_tensor() if isinstance(fa, MetaTensor) else fa).to(device, torch.float32)
    mask = torch.as_tensor(brain).to(device)
    stacks = {}
    for a, idx in chosen.items():
        index = torch.as_tensor(idx, dtype=torch.long)
        stacks[a] = (index, batched(slice_stack(vol, a, index), slice_stack(mask, a, index)))
    one_pass = class_idx is None and getattr(inferer, "method", None) == "cam"
    logits_mean = None
    if class_idx is None and not one_pass:
        batches = [x[s : s + batch_size] for _, x in stacks.values() for s in range(0, len(x), batch_size)]
        logits_mean = _predicted_class(batches, network, device)
        class_idx = int(logits_mean.argmax())
    # maps at input size: every class's in one pass, else the wanted class's
    raw: dict[int, torch.Tensor] = {}
    logit_sum, n = None, 0
    for a, (_, x) in stacks.items():
        maps = []
        for s in range(0, len(x), batch_size):
            out = _call_inferer(inferer, x[s : s + batch_size], network, "all" if one_pass else class_idx)
            logits = out.logits.detach().to(torch.float32).cpu()
            logit_sum = logits.sum(0) if logit_sum is None else logit_sum + logits.sum(0)
            n += logits.shape[0]
            maps.append(out.maps.detach() if one_pass else _select_maps(out.maps.detach(), class_idx))
        raw[a] = torch.cat(maps)
    if logits_mean is None:
        logits_mean = logit_sum / n
    if one_pass:
        class_idx = int(logits_mean.argmax())
    per_axis, covered = {}, {}
    for a in axes:
        per_axis[a] = torch.zeros(shape, dtype=torch.float32)
        covered[a] = torch.zeros(shape, dtype=torch.bool)
        if a not in stacks:
            continue
        index = stacks[a][0]
        plane = tuple(s for d, s in enumerate(shape) if d != a)
        back = batched.invert(_select_maps(raw[a], class_idx), plane)[:, 0].cpu()
        # (n, H, W) -> the slices' place along axis a
        per_axis[a].index_copy_(a, index, back.movedim(0, a))
        covered[a].index_fill_(a, index, True)
    fused, known = _fuse(list(per_axis.values()), list(covered.values()), fuse, coverage)
    return CAMVolume(fused, per_axis, covered, class_idx, logits_mean, known)


def _cam_volume_3d(fa, brain, network, inferer, eval_transform, class_idx, device) -> CAMVolume:
    item = eval_transform({"image": fa, "mask": brain})
    x = item["image"].as_tensor()[None]
    logits_mean = None
    if class_idx is None:
        logits_mean = _predicted_class([x], network, device)
        class_idx = int(logits_mean.argmax())
    out = _call_inferer(inferer, x.to(device), network, class_idx)
    if logits_mean is None:
        logits_mean = out.logits.detach().cpu().to(torch.float32)[0]
    chosen = _select_maps(out.maps.detach().cpu(), class_idx)
    vol = map_to_slice(chosen[0], item, eval_transform)[0]
    known = torch.ones(vol.shape, dtype=torch.bool)
    return CAMVolume(vol.to(torch.float32), {}, {}, class_idx, logits_mean, known)
