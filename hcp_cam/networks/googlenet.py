"""GoogLeNet-GAP/GMP: GoogLeNet (Inception v1) cut after inception4e (14x14 at 224), then the CAM head."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from hcp_cam.networks.base import CAMNetwork
from hcp_cam.networks.blocks import Branches, ConvNormAct, max_pool, scale_channels

__all__ = ["GoogLeNetGAP", "inception_v1_block"]

# Szegedy et al. 2015, table 1: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)
_BLOCKS = OrderedDict(
    [
        ("inception3a", (64, 96, 128, 16, 32, 32)),
        ("inception3b", (128, 128, 192, 32, 96, 64)),
        ("pool3", None),
        ("inception4a", (192, 96, 208, 16, 48, 64)),
        ("inception4b", (160, 112, 224, 24, 64, 64)),
        ("inception4c", (128, 128, 256, 24, 64, 64)),
        ("inception4d", (112, 144, 288, 32, 64, 64)),
        ("inception4e", (256, 160, 320, 32, 128, 128)),
    ]
)


def inception_v1_block(
    spatial_dims: int, in_channels: int, spec: tuple[int, ...], width: float, batch_norm: bool
) -> tuple[nn.Module, int]:
    """One Inception (v1) module: 1x1 | 1x1-3x3 | 1x1-5x5 | 3x3 max pool-1x1, concatenated.

    The spatial size is kept. The 5x5 branch keeps its 5x5 kernel, as in the paper.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        spec: full-width channels (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj).
        width: channel multiplier.
        batch_norm: batch norm after each convolution.

    Returns:
        The module and its output channel count (sum of the four branches).
    """
    b1, r3, b3, r5, b5, bp = (scale_channels(c, width) for c in spec)
    d, bn = spatial_dims, batch_norm
    branches = [
        ConvNormAct(d, in_channels, b1, 1, batch_norm=bn),
        nn.Sequential(ConvNormAct(d, in_channels, r3, 1, batch_norm=bn), ConvNormAct(d, r3, b3, 3, 1, 1, bn)),
        nn.Sequential(ConvNormAct(d, in_channels, r5, 1, batch_norm=bn), ConvNormAct(d, r5, b5, 5, 1, 2, bn)),
        nn.Sequential(
            max_pool(d, 3, 1, 1, ceil_mode=True), ConvNormAct(d, in_channels, bp, 1, batch_norm=bn)
        ),
    ]
    return Branches(branches), b1 + b3 + b5 + bp


def googlenet_backbone(
    spatial_dims: int, in_channels: int, width: float, batch_norm: bool
) -> tuple[nn.Module, int]:
    """GoogLeNet up to inception4e: ``(B, C, 224, 224) -> (B, 832 * width, 14, 14)``.

    Returns:
        The backbone and its output channel count.
    """
    d, bn = spatial_dims, batch_norm
    c1, c2, c3 = (scale_channels(c, width) for c in (64, 64, 192))
    layers: list[tuple[str, nn.Module]] = [
        ("conv1", ConvNormAct(d, in_channels, c1, 7, 2, 3, bn)),
        ("pool1", max_pool(d, 3, 2, ceil_mode=True)),
        ("conv2", ConvNormAct(d, c1, c2, 1, batch_norm=bn)),
        ("conv3", ConvNormAct(d, c2, c3, 3, 1, 1, bn)),
        ("pool2", max_pool(d, 3, 2, ceil_mode=True)),
    ]
    channels = c3
    for name, spec in _BLOCKS.items():
        if spec is None:
            layers.append((name, max_pool(d, 3, 2, ceil_mode=True)))
            continue
        block, channels = inception_v1_block(d, channels, spec, width, bn)
        layers.append((name, block))
    return nn.Sequential(OrderedDict(layers)), channels


class GoogLeNetGAP(CAMNetwork):
    """GoogLeNet with global average (GAP) or max (GMP) pooling for CAM (Zhou et al. 2016).

    Layers after inception4e are removed; a 3x3 convolution with ``1024 * width`` units, global
    pooling, dropout and one linear layer follow. Batch norm after every convolution by default,
    as in the modern form of the network (no local response normalisation, no auxiliary heads).
    Feature maps are 14x14 (14^3) at a 224 input; the minimum input is 15 voxels per axis.

    Args:
        spatial_dims: 2 (slices ``(B, C, H, W)``) or 3 (volumes ``(B, C, D, H, W)``).
        in_channels: input channels (default 1, an FA map).
        num_classes: number of classes.
        width: channel multiplier (every layer keeps >= 4 channels).
        dropout: dropout probability before the classifier.
        pooling: ``"avg"`` (GAP) or ``"max"`` (GMP, the paper's GoogLeNet-GMP).
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
        backbone, channels = googlenet_backbone(spatial_dims, in_channels, width, bn)
        arch = "googlenet" if pooling == "avg" else "googlenet_gmp"
        super().__init__(
            arch, backbone, channels, spatial_dims, in_channels, num_classes, width, dropout, pooling, bn
        )
