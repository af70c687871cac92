"""Building blocks shared by the GAP networks, generic in ``spatial_dims`` (2 or 3).

Every layer is made through MONAI's factories (``Conv[Conv.CONV, spatial_dims]``,
``Pool[...]``, ``Norm[...]``), so one definition serves 2D slices ``(B, C, H, W)`` and
volumes ``(B, C, D, H, W)``. :func:`spatial_out` follows one spatial axis through a block
without running it; the networks use it for ``min_input_size`` and ``feature_size``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

__all__ = ["scale_channels", "ConvNormAct", "AxisConvs", "Branches", "max_pool", "avg_pool", "spatial_out"]

#: no layer of these networks is ever narrower than this, whatever ``width`` is
MIN_CHANNELS = 4


def scale_channels(channels: int, width: float) -> int:
    """Channel count of a layer after the width multiplier.

    Args:
        channels: the channel count of the full-width network.
        width: the multiplier (> 0), e.g. 0.125 for quick CPU runs.

    Returns:
        ``round(channels * width)``, at least :data:`MIN_CHANNELS`.
    """
    return max(MIN_CHANNELS, int(round(channels * width)))


class ConvNormAct(nn.Sequential):
    """Convolution, optional batch norm, ReLU: ``(B, C_in, *S) -> (B, C_out, *S')``.

    The convolution has no bias when batch norm follows it (the norm's shift replaces it).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: int, or one size per spatial axis (factorised kernels such as 1x7).
        stride: int or one per axis.
        padding: int or one per axis.
        batch_norm: add ``BatchNorm{2,3}d`` between the convolution and the ReLU.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        batch_norm: bool = False,
    ) -> None:
        conv_type = Conv[Conv.CONV, spatial_dims]
        layers: list[tuple[str, nn.Module]] = [
            (
                "conv",
                conv_type(
                    in_channels,
                    out_channels,
                    kernel_size=kernel_size,
                    stride=stride,
                    padding=padding,
                    bias=not batch_norm,
                ),
            )
        ]
        if batch_norm:
            # eps as in Inception V3 / GoogLeNet with BN
            layers.append(("norm", Norm[Norm.BATCH, spatial_dims](out_channels, eps=0.001)))
        layers.append(("act", nn.ReLU(inplace=True)))
        super().__init__(OrderedDict(layers))


class AxisConvs(nn.Sequential):
    """A factorised ``k x k (x k)`` convolution: one ``k``-long convolution along each spatial axis.

    Inception V3 replaces a 7x7 convolution by 1x7 then 7x1; in 3D this becomes 1x1x7, 1x7x1 and
    7x1x1. Every step keeps the spatial size (``padding = k // 2`` along its axis).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels of the first step.
        mid_channels: output channels of every step but the last.
        out_channels: output channels of the last step.
        kernel_size: the length ``k`` of each 1-D kernel (odd).
        batch_norm: batch norm after each convolution.
        reverse: go through the axes from the first instead of the last (7x1 then 1x7 in 2D).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        kernel_size: int = 7,
        batch_norm: bool = True,
        reverse: bool = False,
    ) -> None:
        axes = list(range(spatial_dims)) if reverse else list(range(spatial_dims - 1, -1, -1))
        layers: list[tuple[str, nn.Module]] = []
        channels = in_channels
        for step, axis in enumerate(axes):
            kernel = [1] * spatial_dims
            pad = [0] * spatial_dims
            kernel[axis], pad[axis] = kernel_size, kernel_size // 2
            out = out_channels if step == len(axes) - 1 else mid_channels
            # the step is in the name: TorchScript shares one compiled forward between Sequentials
            # whose children have the same names and types, whatever their order
            layers.append(
                (
                    f"step{step}_axis{axis}",
                    ConvNormAct(spatial_dims, channels, out, kernel, 1, pad, batch_norm),
                )
            )
            channels = out
        super().__init__(OrderedDict(layers))


class Branches(nn.Module):
    """Parallel branches concatenated along channels (the Inception module).

    Every branch must give the same spatial size; the output has the sum of their channels.

    Args:
        branches: the branch modules, each ``(B, C_in, *S) -> (B, C_i, *S')``.
    """

    def __init__(self, branches: Sequence[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for branch in self.branches:
            outs.append(branch(x))
        return torch.cat(outs, 1)


def max_pool(spatial_dims: int, kernel_size: int, stride: int, padding: int = 0, ceil_mode: bool = False):
    """``MaxPool{2,3}d`` for ``spatial_dims``."""
    return Pool[Pool.MAX, spatial_dims](kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode)


def avg_pool(spatial_dims: int, kernel_size: int, stride: int, padding: int = 0):
    """``AvgPool{2,3}d`` for ``spatial_dims``; padded zeros are left out of the mean."""
    return Pool[Pool.AVG, spatial_dims](kernel_size, stride=stride, padding=padding, count_include_pad=False)


def _axis(value, axis: int) -> int:
    return int(value[axis]) if isinstance(value, (tuple, list)) else int(value)


def _window_out(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's output length of a sliding window (``pooling_output_shape``); < 1 when it does not fit."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1 if span >= 0 else 0
    # ceil_mode lets the last window run into the right padding, as long as it starts inside
    out = (span + stride - 1) // stride + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def spatial_out(module: nn.Module, size: int, axis: int = 0) -> int:
    """Length of spatial ``axis`` after ``module``, without running it.

    Knows convolutions, max/avg pooling, ``nn.Sequential`` (in order) and :class:`Branches`
    (every branch must fit); any other module keeps the size (norms, activations, dropout).

    Args:
        module: a block built from this file's pieces.
        size: the input length along ``axis`` (voxels).
        axis: which spatial axis (0-based), for factorised kernels.

    Returns:
        The output length, or 0 when some layer would get an input smaller than its window.
    """
    if size < 1:
        return 0
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        return _window_out(
            size,
            _axis(module.kernel_size, axis),
            _axis(module.stride, axis),
            _axis(module.padding, axis),
            _axis(module.dilation, axis),
            False,
        )
    if isinstance(module, (nn.MaxPool2d, nn.MaxPool3d)):
        return _window_out(
            size,
            _axis(module.kernel_size, axis),
            _axis(module.stride, axis),
            _axis(module.padding, axis),
            _axis(module.dilation, axis),
            bool(module.ceil_mode),
        )
    if isinstance(module, (nn.AvgPool2d, nn.AvgPool3d)):
        if isinstance(module, nn.AvgPool3d) and size < _axis(module.kernel_size, axis):
            return 0  # avg_pool3d wants the unpadded input at least as large as its kernel
        return _window_out(
            size,
            _axis(module.kernel_size, axis),
            _axis(module.stride, axis),
            _axis(module.padding, axis),
            1,
            bool(module.ceil_mode),
        )
    if isinstance(module, nn.Sequential):
        for child in module:
            size = spatial_out(child, size, axis)
        return size
    if isinstance(module, Branches):
        sizes = [spatial_out(branch, size, axis) for branch in module.branches]
        return 0 if min(sizes) < 1 else sizes[0]
    return size
