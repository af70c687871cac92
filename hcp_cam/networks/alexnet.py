"""AlexNet-GAP: AlexNet cut after conv5 (13x13 at 224/227 input), then the CAM head."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from hcp_cam.networks.base import CAMNetwork
from hcp_cam.networks.blocks import ConvNormAct, max_pool, scale_channels

__all__ = ["AlexNetGAP"]

# conv1..conv5 channels of Krizhevsky et al. 2012 (one tower, no groups)
_CHANNELS = (96, 256, 384, 384, 256)


def alexnet_backbone(
    spatial_dims: int, in_channels: int, width: float, batch_norm: bool
) -> tuple[nn.Module, int]:
    """AlexNet conv1..conv5 without pool5: ``(B, C, 224, 224) -> (B, 256 * width, 13, 13)``.

    conv1 is padded by 2 so that 224 and 227 inputs both give 55 -> 27 -> 13.

    Returns:
        The backbone and its output channel count.
    """
    c1, c2, c3, c4, c5 = (scale_channels(c, width) for c in _CHANNELS)
    d, bn = spatial_dims, batch_norm
    layers = OrderedDict(
        [
            ("conv1", ConvNormAct(d, in_channels, c1, 11, 4, 2, bn)),
            ("pool1", max_pool(d, 3, 2)),
            ("conv2", ConvNormAct(d, c1, c2, 5, 1, 2, bn)),
            ("pool2", max_pool(d, 3, 2)),
            ("conv3", ConvNormAct(d, c2, c3, 3, 1, 1, bn)),
            ("conv4", ConvNormAct(d, c3, c4, 3, 1, 1, bn)),
            ("conv5", ConvNormAct(d, c4, c5, 3, 1, 1, bn)),
        ]
    )
    return nn.Sequential(layers), c5


class AlexNetGAP(CAMNetwork):
    """AlexNet with global average (or max) pooling for CAM (Zhou et al. 2016).

    Layers after conv5 (pool5, fc6..fc8) are removed; a 3x3 convolution with ``1024 * width``
    units, global pooling, dropout and one linear layer follow. Local response normalisation is
    left out (as in torchvision's AlexNet); ``batch_norm=True`` puts batch norm after every
    convolution instead. Feature maps are 13x13 (13^3) at a 224 or 227 input; the minimum input
    is 31 voxels per axis.

    Args:
        spatial_dims: 2 (slices ``(B, C, H, W)``) or 3 (volumes ``(B, C, D, H, W)``).
        in_channels: input channels (default 1, an FA map).
        num_classes: number of classes.
        width: channel multiplier (every layer keeps >= 4 channels).
        dropout: dropout probability before the classifier.
        pooling: ``"avg"`` (GAP) or ``"max"`` (GMP).
        batch_norm: batch norm after each convolution; ``None`` means the default, ``False``
            (the original AlexNet has none).

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
        backbone, channels = alexnet_backbone(spatial_dims, in_channels, width, bn)
        super().__init__(
            "alexnet", backbone, channels, spatial_dims, in_channels, num_classes, width, dropout, pooling, bn
        )
