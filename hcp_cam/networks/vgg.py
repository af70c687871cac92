"""VGG16-GAP: VGG16 cut after conv5_3, without pool5 (14x14 at 224 input), then the CAM head."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from hcp_cam.networks.base import CAMNetwork
from hcp_cam.networks.blocks import ConvNormAct, max_pool, scale_channels

__all__ = ["VGG16GAP"]

# (channels, number of 3x3 convolutions) of the five VGG16 stages (Simonyan & Zisserman 2015, D)
_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def vgg16_backbone(
    spatial_dims: int, in_channels: int, width: float, batch_norm: bool
) -> tuple[nn.Module, int]:
    """VGG16 conv1_1..conv5_3, pool1..pool4: ``(B, C, 224, 224) -> (B, 512 * width, 14, 14)``.

    Returns:
        The backbone and its output channel count.
    """
    layers: list[tuple[str, nn.Module]] = []
    channels = in_channels
    for stage, (out, repeats) in enumerate(_STAGES, start=1):
        if stage > 1:
            layers.append((f"pool{stage - 1}", max_pool(spatial_dims, 2, 2)))
        out = scale_channels(out, width)
        for i in range(1, repeats + 1):
            layers.append((f"conv{stage}_{i}", ConvNormAct(spatial_dims, channels, out, 3, 1, 1, batch_norm)))
            channels = out
    return nn.Sequential(OrderedDict(layers)), channels


class VGG16GAP(CAMNetwork):
    """VGG16 with global average (or max) pooling for CAM (Zhou et al. 2016).

    pool5 and the fully connected layers are removed; a 3x3 convolution with ``1024 * width``
    units, global pooling, dropout and one linear layer follow. Feature maps are 14x14 (14^3) at a
    224 input; the minimum input is 16 voxels per axis.

    Args:
        spatial_dims: 2 (slices ``(B, C, H, W)``) or 3 (volumes ``(B, C, D, H, W)``).
        in_channels: input channels (default 1, an FA map).
        num_classes: number of classes.
        width: channel multiplier (every layer keeps >= 4 channels).
        dropout: dropout probability before the classifier.
        pooling: ``"avg"`` (GAP) or ``"max"`` (GMP).
        batch_norm: batch norm after each convolution (VGG16-BN); ``None`` means the default,
            ``False`` (the original VGG16 has none).

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
        bn = False if batch_norm is None else bool(batch_norm)
        backbone, channels = vgg16_backbone(spatial_dims, in_channels, width, bn)
        super().__init__(
            "vgg16", backbone, channels, spatial_dims, in_channels, num_classes, width, dropout, pooling, bn
        )
