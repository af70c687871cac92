"""InceptionV3-GAP: Inception V3 cut after Mixed_6e (17x17 at 299 input), then the CAM head."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from hcp_cam.networks.base import CAMNetwork
from hcp_cam.networks.blocks import AxisConvs, Branches, ConvNormAct, avg_pool, max_pool, scale_channels

__all__ = ["InceptionV3GAP"]


def inception_a(
    d: int, in_channels: int, pool_features: int, width: float, bn: bool
) -> tuple[nn.Module, int]:
    """Mixed_5b..5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | 3x3 avg pool-1x1 (size kept)."""
    c64, c48, c96, cp = (scale_channels(c, width) for c in (64, 48, 96, pool_features))
    branches = [
        ConvNormAct(d, in_channels, c64, 1, batch_norm=bn),
        nn.Sequential(
            ConvNormAct(d, in_channels, c48, 1, batch_norm=bn), ConvNormAct(d, c48, c64, 5, 1, 2, bn)
        ),
        nn.Sequential(
            ConvNormAct(d, in_channels, c64, 1, batch_norm=bn),
            ConvNormAct(d, c64, c96, 3, 1, 1, bn),
            ConvNormAct(d, c96, c96, 3, 1, 1, bn),
        ),
        nn.Sequential(avg_pool(d, 3, 1, 1), ConvNormAct(d, in_channels, cp, 1, batch_norm=bn)),
    ]
    return Branches(branches), c64 + c64 + c96 + cp


def inception_b(d: int, in_channels: int, width: float, bn: bool) -> tuple[nn.Module, int]:
    """Mixed_6a, the grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | 3x3/2 max pool."""
    c384, c64, c96 = (scale_channels(c, width) for c in (384, 64, 96))
    branches = [
        ConvNormAct(d, in_channels, c384, 3, 2, 0, bn),
        nn.Sequential(
            ConvNormAct(d, in_channels, c64, 1, batch_norm=bn),
            ConvNormAct(d, c64, c96, 3, 1, 1, bn),
            ConvNormAct(d, c96, c96, 3, 2, 0, bn),
        ),
        max_pool(d, 3, 2),
    ]
    return Branches(branches), c384 + c96 + in_channels


def inception_c(d: int, in_channels: int, channels_7x7: int, width: float, bn: bool) -> tuple[nn.Module, int]:
    """Mixed_6b..6e: 1x1 | 1x1-(7x7 factorised) | 1x1-(7x7 factorised)x2 | 3x3 avg pool-1x1.

    A 7x7 convolution is factorised into one 7-long convolution per spatial axis (1x7 and 7x1 in
    2D; 1x1x7, 1x7x1 and 7x1x1 in 3D), see :class:`~hcp_cam.networks.blocks.AxisConvs`.
    """
    c192, c7 = scale_channels(192, width), scale_channels(channels_7x7, width)
    branches = [
        ConvNormAct(d, in_channels, c192, 1, batch_norm=bn),
        nn.Sequential(ConvNormAct(d, in_channels, c7, 1, batch_norm=bn), AxisConvs(d, c7, c7, c192, 7, bn)),
        nn.Sequential(
            ConvNormAct(d, in_channels, c7, 1, batch_norm=bn),
            AxisConvs(d, c7, c7, c7, 7, bn, reverse=True),
            AxisConvs(d, c7, c7, c192, 7, bn),
        ),
        nn.Sequential(avg_pool(d, 3, 1, 1), ConvNormAct(d, in_channels, c192, 1, batch_norm=bn)),
    ]
    return Branches(branches), 4 * c192


def inception_v3_backbone(
    spatial_dims: int, in_channels: int, width: float, batch_norm: bool
) -> tuple[nn.Module, int]:
    """Inception V3 up to Mixed_6e: ``(B, C, 299, 299) -> (B, 768 * width, 17, 17)``.

    Returns:
        The backbone and its output channel count.
    """
    d, bn = spatial_dims, batch_norm
    c32, c64, c80, c192 = (scale_channels(c, width) for c in (32, 64, 80, 192))
    layers: list[tuple[str, nn.Module]] = [
        ("Conv2d_1a_3x3", ConvNormAct(d, in_channels, c32, 3, 2, 0, bn)),
        ("Conv2d_2a_3x3", ConvNormAct(d, c32, c32, 3, 1, 0, bn)),
        ("Conv2d_2b_3x3", ConvNormAct(d, c32, c64, 3, 1, 1, bn)),
        ("maxpool1", max_pool(d, 3, 2)),
        ("Conv2d_3b_1x1", ConvNormAct(d, c64, c80, 1, batch_norm=bn)),
        ("Conv2d_4a_3x3", ConvNormAct(d, c80, c192, 3, 1, 0, bn)),
        ("maxpool2", max_pool(d, 3, 2)),
    ]
    channels = c192
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        block, channels = inception_a(d, channels, pool_features, width, bn)
        layers.append((name, block))
    block, channels = inception_b(d, channels, width, bn)
    layers.append(("Mixed_6a", block))
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        block, channels = inception_c(d, channels, c7, width, bn)
        layers.append((name, block))
    return nn.Sequential(OrderedDict(layers)), channels


class InceptionV3GAP(CAMNetwork):
    """Inception V3 with global average (or max) pooling for CAM.

    Cut after Mixed_6e, the last 17x17 block (the counterpart of GoogLeNet's inception4e); a 3x3
    convolution with ``1024 * width`` units, global pooling, dropout and one linear layer follow.
    Batch norm after every convolution by default, as in Szegedy et al. 2016; no auxiliary head.
    Feature maps are 17x17 (17^3) at a 299 input; the minimum input is 43 voxels per axis in 2D
    and 75 in 3D (``avg_pool3d`` needs an unpadded input at least as large as its kernel).

    Args:
        spatial_dims: 2 (slices ``(B, C, H, W)``) or 3 (volumes ``(B, C, D, H, W)``).
        in_channels: input channels (default 1, an FA map).
        num_classes: number of classes.
        width: channel multiplier (every layer keeps >= 4 channels).
        dropout: dropout probability before the classifier.
        pooling: ``"avg"`` (GAP) or ``"max"`` (GMP).
        batch_norm: batch norm after each convolution; ``None`` means the default, ``True``.

    Raises:
        ConfigError: an argument out of range.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        width: float = 1.0,
        dropout: float = 0.5,
        pooling: str = "avg",
        batch_norm: bool | None = None,
    ) -> None:
        bn = True if batch_norm is None else bool(batch_norm)
        backbone, channels = inception_v3_backbone(spatial_dims, in_channels, width, bn)
        super().__init__(
            "inception_v3",
            backbone,
            channels,
            spatial_dims,
            in_channels,
            num_classes,
            width,
            dropout,
            pooling,
            bn,
        )
