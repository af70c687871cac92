"""The random tail of the slice train chain on whole batches on their device: crop, flip, noise,
brain mask, erase, with one parameter draw per sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hcp_cam.transforms.preprocessing import PreprocessingParams, as_params

__all__ = ["SliceAugmentParams", "RandSliceAugment", "crop_resize"]


def crop_resize(
    x: torch.Tensor,
    boxes: torch.Tensor,
    size: Sequence[int] | None = None,
    clamp_to_box: bool = True,
    flip: torch.Tensor | None = None,
    flip_dim: int = -2,
) -> torch.Tensor:
    """Crop a box out of each image of a batch and resize it, bilinearly, in one ``grid_sample`` call.

    Sampling positions are those of ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` (and so of MONAI's ``Resize``) applied to the box: output pixel ``i``
    reads box coordinate ``(i + 0.5) * h / H_out - 0.5``. With ``clamp_to_box`` the positions are
    clamped to the box's first and last pixel centres, as ``interpolate`` clamps at the edges of its
    input, so the result equals ``SpatialCrop`` + ``Resize`` on each image up to float32 rounding of
    the sampling positions. Parts of a box outside the image read zeros (a crop of a zero-padded image).

    The boxes are axis-aligned, so the sampling grid is what ``affine_grid`` makes for a diagonal
    ``theta``; it is built per axis (``(B, H)`` and ``(B, W)`` positions, then broadcast), which
    avoids ``affine_grid``'s ``(B, H * W, 3)`` product and clamps ``B * (H + W)`` numbers, not ``B * H * W``.

    Args:
        x: ``(B, C, H, W)`` float images.
        boxes: ``(B, 4)`` float boxes ``(y0, x0, h, w)`` in pixels of ``x`` (top-left corner and size;
            integers give MONAI's ``SpatialCrop(roi_start=(y0, x0), roi_end=(y0 + h, x0 + w))``).
        size: ``(H_out, W_out)``; default ``(H, W)``.
        clamp_to_box: clamp the sampling positions to the box (see above); without it the pixels just
            outside the box take part in the interpolation at its edges.
        flip: ``(B,)`` bool: flip these outputs along ``flip_dim`` (done by mirroring the sampling
            positions, so it costs nothing).
        flip_dim: ``-2`` (rows) or ``-1`` (columns).

    Returns:
        ``(B, C, H_out, W_out)`` tensor, same dtype and device as ``x``.
    """
    b, _, h_in, w_in = x.shape
    h_out, w_out = (h_in, w_in) if size is None else (int(size[0]), int(size[1]))
    boxes = boxes.to(device=x.device, dtype=torch.float32)
    y0, x0, bh, bw = (v[:, None] for v in boxes.unbind(1))

    def positions(n_out: int, n_in: int, start: torch.Tensor, side: torch.Tensor, dim: int) -> torch.Tensor:
        # normalised (align_corners=False) output coordinate u reads u * side / n_in + (side + 2 start) / n_in - 1
        u = (2 * torch.arange(n_out, device=x.device, dtype=torch.float32) + 1) / n_out - 1
        if flip is not None and dim == flip_dim:
            u = torch.where(flip.to(x.device)[:, None], -u, u)  # output i reads what n_out - 1 - i would
        pos = u * (side / n_in) + (side + 2 * start) / n_in - 1
        if clamp_to_box:
            # pixel centre p sits at (2 p + 1) / n - 1; the box's centres run from start to start + side - 1
            pos = torch.clamp(pos, (2 * start + 1) / n_in - 1, (2 * (start + side) - 1) / n_in - 1)
        return pos

    gy = positions(h_out, h_in, y0, bh, -2)[:, :, None].expand(b, h_out, w_out)
    gx = positions(w_out, w_in, x0, bw, -1)[:, None, :].expand(b, h_out, w_out)
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


@dataclass
class SliceAugmentParams:
    """One draw of :class:`RandSliceAugment`'s random parameters for a batch of ``B`` images, on its
    device (the settings the draws follow are a :class:`~hcp_cam.transforms.preprocessing.PreprocessingParams`).

    Attributes:
        boxes: ``(B, 4)`` float crop boxes ``(y0, x0, h, w)`` in input pixels, or ``None`` (no crop).
        flip: ``(B,)`` bool, flip this sample.
        noise: ``(B, C, H, W)`` Gaussian noise to add (zeros for the samples without noise), or ``None``.
        erase: ``(B, 4)`` int64 boxes ``(y0, x0, h, w)`` set to 0, or ``None``.
        erase_on: ``(B,)`` bool, erase this sample's box.
    """

    boxes: torch.Tensor | None
    flip: torch.Tensor
    noise: torch.Tensor | None
    erase: torch.Tensor | None
    erase_on: torch.Tensor


class RandSliceAugment(nn.Module):
    """The random tail of the slice train chain, on whole batches on their own device.

    Per sample, in the order of :func:`hcp_cam.transforms.build_slice_transforms`: a random crop
    of the image zero-padded by ``crop_margin`` (with ``crop_scale=(1, 1)``, the default, a random
    integer translation of up to ``crop_margin / 2`` of the size each way, the distribution of
    ``SpatialPadd`` + ``RandSpatialCropd``; other scales crop a larger or smaller box and resize it)
    -> flip along ``flip_axis`` with ``flip_prob`` -> Gaussian noise ``N(0, noise_std)`` with
    ``noise_prob`` -> multiplication by the equally transformed brain mask (the non-zero pixels of
    the input), so noise lands in the brain only and the background stays exactly 0 -> with
    ``erase_prob`` one box of side ``erase_size`` (fractions of the size) set to 0.
    The crop of image and mask is one ``affine_grid``/``grid_sample`` call (:func:`crop_resize`).

    Why not MONAI's random transforms: each draws one set of parameters per call, so applied to a
    ``(B, C, H, W)`` batch every sample would share one flip, one crop and one erased box, and
    drawing per sample would need a Python loop over the batch (B small calls, each with its own
    host-side draws) on the GPU. Here the draws are ``(B,)`` tensors made on the device by a
    ``torch.Generator``, and every step is a few batched kernels.

    In ``eval()`` mode the module is the identity.

    Args:
        params: the settings (:class:`~hcp_cam.transforms.preprocessing.PreprocessingParams`, the same
            object the MONAI chain is built from; its docstring gives every field's meaning and
            default), or ``None`` for the defaults. ``image_size`` is not used: the batch's own size is.
        changes: fields of ``params`` to replace (e.g. ``noise_std=0.2``).

    Raises:
        ConfigError: a setting ``PreprocessingParams`` refuses, or ``flip_axis`` 2.
    """

    def __init__(self, params: PreprocessingParams | None = None, **changes: Any) -> None:
        super().__init__()
        self.params = as_params(params, **changes)
        self.params.check_slices()
        self._seed: int | None = None
        self._generators: dict[torch.device, torch.Generator] = {}

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"flip_prob={p.flip_prob}, flip_axis={p.flip_axis}, noise_std={p.noise_std}, "
            f"noise_prob={p.noise_prob}, noise_sample_std={p.noise_sample_std}, crop_margin={p.crop_margin}, "
            f"crop_scale={p.crop_scale}, erase_prob={p.erase_prob}, erase_size={p.erase_size}"
        )

    def set_random_state(self, seed: int | None = None) -> RandSliceAugment:
        """Seed the module's own generators (one per device), as MONAI's ``Randomizable``."""
        self._seed = None if seed is None else int(seed)
        self._generators.clear()
        return self

    def generator(self, device: torch.device) -> torch.Generator:
        """The module's generator on ``device`` (seeded by :meth:`set_random_state`, else at random)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._generators:
            g = torch.Generator(device=device)
            g.manual_seed(self._seed if self._seed is not None else int(torch.randint(2**62, ()).item()))
            self._generators[device] = g
        return self._generators[device]

    def _padded(self, n: int) -> int:
        return int(round(n * (1.0 + self.params.crop_margin)))

    def randomize(
        self, shape: Sequence[int], device: str | torch.device, generator: torch.Generator | None = None
    ) -> SliceAugmentParams:
        """Draw the parameters of every sample of a batch of ``shape`` ``(B, C, H, W)``.

        Args:
            shape: the batch shape.
            device: where the parameters (and the noise) are made.
            generator: a generator on ``device``; default the module's own (:meth:`generator`).

        Returns:
            the parameters, for :meth:`apply`.
        """
        b, c, h, w = (int(s) for s in shape)
        p = self.params
        dev = torch.device(device)
        g = self.generator(dev) if generator is None else generator
        # every uniform draw of the batch in one kernel: columns are flip, noise on, noise SD,
        # erase on, crop scale, crop start (y, x), erase side (y, x), erase corner (y, x)
        u = torch.rand((b, 11), generator=g, device=dev).unbind(1)
        boxes = None
        if p.crop_margin > 0 or p.crop_scale != (1.0, 1.0):
            lo, hi = p.crop_scale
            scale = lo + (hi - lo) * u[4]  # one scale for both axes: the slice keeps its aspect
            box = []
            for n, r in ((h, u[5]), (w, u[6])):
                padded = max(self._padded(n), n)
                side = (n * scale).clamp(max=float(padded))
                # integer start, uniform in [0, padded - side] (RandSpatialCrop: randint(0, P - S + 1)),
                # relative to the image: SpatialPad puts (P - S) // 2 before it
                box += [torch.floor(r * (torch.floor(padded - side) + 1)) - (padded - n) // 2, side]
            boxes = torch.stack((box[0], box[2], box[1], box[3]), dim=1)
        flip = u[0] < p.flip_prob
        noise = None
        if p.noise_prob > 0 and p.noise_std > 0:
            std = torch.where(u[1] < p.noise_prob, p.noise_std, 0.0)
            if p.noise_sample_std:
                std = std * u[2]
            noise = torch.randn((b, c, h, w), generator=g, device=dev) * std[:, None, None, None]
        erase = None
        erase_on = u[3] < p.erase_prob
        if p.erase_prob > 0:
            corner, sides = [], []
            for n, r_side, r_corner in ((h, u[7], u[9]), (w, u[8], u[10])):
                lo_px = max(1, int(round(p.erase_size[0] * n)))
                hi_px = min(n, max(lo_px, int(round(p.erase_size[1] * n))))
                side = lo_px + torch.floor(
                    r_side * (hi_px - lo_px + 1)
                )  # RandCoarseDropout: randint(lo, hi + 1)
                corner.append(torch.floor(r_corner * (n - side + 1)))
                sides.append(side)
            erase = torch.stack((corner[0], corner[1], sides[0], sides[1]), dim=1).long()
        return SliceAugmentParams(boxes=boxes, flip=flip, noise=noise, erase=erase, erase_on=erase_on)

    def apply(self, x: torch.Tensor, params: SliceAugmentParams) -> torch.Tensor:
        """Apply drawn parameters: crop -> flip -> noise -> brain mask -> erase.

        Args:
            x: ``(B, C, H, W)`` float images, 0 outside the brain (the slice cache's images).
            params: from :meth:`randomize` (or made by hand, e.g. in tests).

        Returns:
            ``(B, C, H, W)`` augmented images (a new tensor; ``x`` is not modified).
        """
        b, c, h, w = x.shape
        dim = -2 if self.params.flip_axis == 0 else -1
        brain = (x != 0).any(dim=1, keepdim=True) if c > 1 else x != 0
        if params.boxes is not None:
            # image and mask in one call; the flip mirrors the sampling positions
            both = crop_resize(
                torch.cat((x, brain.to(x.dtype)), dim=1), params.boxes, (h, w), flip=params.flip, flip_dim=dim
            )
            x, keep = both[:, :c], both[:, c:] > 0.5  # the bilinear mask thresholded: nearest-like
        else:
            flip = params.flip.view(b, 1, 1, 1)
            x, keep = torch.where(flip, x.flip(dim), x), torch.where(flip, brain.flip(dim), brain)
        if params.noise is not None:
            x = x + params.noise.to(x.dtype)
        if params.erase is not None:
            y0, x0, eh, ew = (v[:, None] for v in params.erase.unbind(1))
            rows = torch.arange(h, device=x.device)[None]
            cols = torch.arange(w, device=x.device)[None]
            in_rows = ((rows >= y0) & (rows < y0 + eh) & params.erase_on[:, None]).view(b, 1, h, 1)
            in_cols = ((cols >= x0) & (cols < x0 + ew)).view(b, 1, 1, w)
            keep = keep & ~(in_rows & in_cols)
        return torch.where(keep, x, 0.0)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a ``(B, C, H, W)`` batch (identity in ``eval()`` mode).

        Args:
            x: the batch, on any device.
            generator: a generator on ``x.device``; default the module's own.
        """
        if not self.training:
            return x
        if x.ndim != 4:
            raise ValueError(f"RandSliceAugment takes (B, C, H, W) batches, got shape {tuple(x.shape)}")
        return self.apply(x, self.randomize(x.shape, x.device, generator))
