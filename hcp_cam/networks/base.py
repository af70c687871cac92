"""The common head and interface of every GAP/GMP network: :class:`CAMNetwork`.

Zhou et al., *Learning Deep Features for Discriminative Localization*, CVPR 2016: a backbone cut
where its feature maps are still about 14x14, a 3x3 convolution with 1024 units and ReLU, global
average (GAP) or max (GMP) pooling and one linear layer. For GAP the logit of class ``c`` is the
mean over positions of the class activation map ``M_c = sum_k w_ck f_k + b_c``, which is what
``monai.visualize.CAM(net, target_layers="features", fc_layers="classifier")`` computes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from hcp_cam.errors import ConfigError
from hcp_cam.networks.blocks import ConvNormAct, scale_channels, spatial_out

__all__ = ["CAMNetwork", "POOLINGS", "CAM_UNITS"]

POOLINGS = ("avg", "max")
#: units of the 3x3 convolution added on the cut backbone (before the width multiplier)
CAM_UNITS = 1024
# largest input size searched for ``min_input_size``
_MAX_SEARCH = 4096


def check_config(spatial_dims: int, num_classes: int, width: float, dropout: float, pooling: str) -> None:
    """Raise :class:`ConfigError` for arguments no network accepts.

    Raises:
        ConfigError: ``spatial_dims`` not 2 or 3, ``num_classes < 1``, ``width <= 0``,
            ``dropout`` outside ``[0, 1)``, or ``pooling`` not ``"avg"``/``"max"``.
    """
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 (slices) or 3 (volumes), got {spatial_dims!r}")
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes!r}")
    if not width > 0:
        raise ConfigError(f"width must be > 0, got {width!r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions (fan-out, ReLU), unit batch norms, small linear weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class CAMNetwork(nn.Module):
    """A cut backbone with the CAM head: ``(B, C, *S) -> logits (B, num_classes)``.

    Subclasses build the backbone and hand it over; this class adds the 3x3 convolution with
    ``1024 * width`` units, the global pooling, dropout and the classifier, and checks inputs.

    Attributes:
        features: backbone then ``cam_conv`` (3x3 conv, stride 1, pad 1, [BN], ReLU);
            ``features(x)`` is ``(B, K, *S_f)`` with ``K = scale_channels(1024, width)``.
        pool: global average or max pooling and flatten, ``(B, K, *S_f) -> (B, K)``.
        dropout: ``nn.Dropout`` on the pooled vector.
        classifier: ``nn.Linear(K, num_classes)``.
        arch, spatial_dims, in_channels, num_classes, pooling: as given.
        min_input_size: smallest spatial size (voxels, every axis) the network runs on.

    Args:
        arch: the network's name, used in error messages.
        backbone: the cut backbone, ``(B, in_channels, *S) -> (B, backbone_channels, *S_f)``.
        backbone_channels: channels of the backbone's output.
        spatial_dims: 2 for slices ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
        in_channels: input channels (1 for an FA map).
        num_classes: number of classes (logits).
        width: channel multiplier of the whole network (every layer keeps >= 4 channels).
        dropout: dropout probability before the classifier.
        pooling: ``"avg"`` (GAP) or ``"max"`` (GMP).
        batch_norm: batch norm in the added 3x3 convolution.

    Raises:
        ConfigError: an argument out of range (see :func:`check_config`).
    """

    def __init__(
        self,
        arch: str,
        backbone: nn.Module,
        backbone_channels: int,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        width: float,
        dropout: float,
        pooling: str,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        check_config(spatial_dims, num_classes, width, dropout, pooling)
        self.arch = str(arch)
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.pooling = str(pooling)
        units = scale_channels(CAM_UNITS, width)
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("backbone", backbone),
                    (
                        "cam_conv",
                        ConvNormAct(spatial_dims, backbone_channels, units, 3, 1, 1, batch_norm=batch_norm),
                    ),
                ]
            )
        )
        # no Python keyword as a layer name ("global"): saved TorchScript would not load back
        pool_kind = Pool.ADAPTIVEAVG if pooling == "avg" else Pool.ADAPTIVEMAX
        self.pool = nn.Sequential(
            OrderedDict([("global_pool", Pool[pool_kind, spatial_dims](1)), ("flatten", nn.Flatten(1))])
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(units, num_classes)
        self.min_input_size = self._find_min_input_size()
        init_weights(self)

    def _find_min_input_size(self) -> int:
        for size in range(1, _MAX_SEARCH + 1):
            if self.feature_size(size) >= 1:
                return size
        raise ConfigError(f"{self.arch}: no input up to {_MAX_SEARCH} voxels gives a feature map")

    def feature_size(self, input_size: int) -> int:
        """Spatial size of ``features(x)`` for an input of ``input_size`` on every axis (0 if too small).

        Computed from the layers' kernels, strides and paddings, without running the network.
        """
        return min(spatial_out(self.features, int(input_size), axis) for axis in range(self.spatial_dims))

    def cam_layers(self) -> tuple[str, str]:
        """Names for ``monai.visualize.CAM(net, target_layers=..., fc_layers=...)``: ``("features", "classifier")``."""
        return "features", "classifier"

    def classifier_weights(self) -> torch.Tensor:
        """The CAM weights ``w_ck``: a detached ``(num_classes, K)`` tensor."""
        return self.classifier.weight.detach()

    def check_input_size(self, shape: list[int]) -> None:
        """Check an input shape ``(B, C, *S)`` before any convolution (TorchScript-compatible).

        Args:
            shape: the input's shape.

        Raises:
            ValueError: wrong number of dimensions, wrong channel count, or a spatial size below
                ``min_input_size`` (the message states the minimum).
        """
        if len(shape) != self.spatial_dims + 2:
            raise ValueError(
                f"{self.arch} (spatial_dims={self.spatial_dims}) expects input (B, C, *spatial) with "
                f"{self.spatial_dims + 2} dimensions, got shape {shape}"
            )
        if shape[1] != self.in_channels:
            raise ValueError(f"{self.arch} expects {self.in_channels} input channel(s), got shape {shape}")
        for size in shape[2:]:
            if size < self.min_input_size:
                raise ValueError(
                    f"{self.arch}: input spatial size {shape[2:]} is too small; the minimum is "
                    f"{self.min_input_size} voxels on every spatial axis"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of an input ``(B, in_channels, *S)``, each ``S >= min_input_size``."""
        self.check_input_size(x.shape)
        return self.classifier(self.dropout(self.pool(self.features(x))))
