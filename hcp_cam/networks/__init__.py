"""GAP/GMP networks for Class Activation Maps, in 2D (slices) or 3D (volumes), and their registry.

Every network is a :class:`CAMNetwork`: ``features(x) -> (B, K, *S_f)``, ``pool``, ``dropout``,
``classifier = nn.Linear(K, num_classes)``, ``forward(x) -> (B, num_classes)``. Build one by name::

    net = get_network("alexnet", spatial_dims=2, num_classes=2, width=0.125)
    cam = monai.visualize.CAM(net, *net.cam_layers())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hcp_cam.errors import ConfigError
from hcp_cam.networks.alexnet import AlexNetGAP
from hcp_cam.networks.base import CAMNetwork
from hcp_cam.networks.googlenet import GoogLeNetGAP
from hcp_cam.networks.inception_v3 import InceptionV3GAP
from hcp_cam.networks.vgg import VGG16GAP

__all__ = [
    "NETWORKS",
    "AlexNetGAP",
    "CAMNetwork",
    "GoogLeNetGAP",
    "InceptionV3GAP",
    "VGG16GAP",
    "available_networks",
    "default_input_size",
    "get_network",
]


def _googlenet_gmp(**kwargs: Any) -> GoogLeNetGAP:
    """GoogLeNet with global max pooling (the CAM paper's GoogLeNet-GMP)."""
    pooling = kwargs.pop("pooling", "max")
    if pooling != "max":
        raise ConfigError(f"googlenet_gmp always pools with 'max', got pooling={pooling!r}; use 'googlenet'")
    return GoogLeNetGAP(pooling="max", **kwargs)


#: name -> constructor taking the keyword arguments of :func:`get_network`
NETWORKS: dict[str, Callable[..., CAMNetwork]] = {
    "alexnet": AlexNetGAP,
    "vgg16": VGG16GAP,
    "googlenet": GoogLeNetGAP,
    "googlenet_gmp": _googlenet_gmp,
    "inception_v3": InceptionV3GAP,
}

# the input each backbone was designed for; AlexNet's 227 gives the same 13x13 maps as 224
_DEFAULT_INPUT_SIZE = {"inception_v3": 299}
# keyword arguments every constructor takes beyond those of get_network
_EXTRA_KWARGS = frozenset({"pooling"})


def available_networks() -> list[str]:
    """Names accepted by :func:`get_network`, sorted."""
    return sorted(NETWORKS)


def _check_name(name: str) -> str:
    if name not in NETWORKS:
        raise ConfigError(f"unknown network {name!r}; valid names are: {', '.join(available_networks())}")
    return name


def default_input_size(name: str) -> int:
    """Spatial size (pixels per axis) a network was designed for: 299 for ``inception_v3``, else 224.

    At that size the feature maps are 13x13 (AlexNet), 14x14 (VGG16, GoogLeNet) or 17x17
    (Inception V3).

    Raises:
        ConfigError: unknown ``name`` (the message lists the valid names).
    """
    return _DEFAULT_INPUT_SIZE.get(_check_name(name), 224)


def get_network(
    name: str,
    spatial_dims: int = 2,
    in_channels: int = 1,
    num_classes: int = 2,
    width: float = 1.0,
    dropout: float = 0.5,
    batch_norm: bool | None = None,
    **kwargs: Any,
) -> CAMNetwork:
    """Build a GAP/GMP network by name.

    Args:
        name: one of :func:`available_networks` (``alexnet``, ``googlenet``, ``googlenet_gmp``,
            ``inception_v3``, ``vgg16``).
        spatial_dims: 2 for slices ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
        in_channels: input channels (1 for an FA map).
        num_classes: number of classes (logits).
        width: channel multiplier (e.g. 0.125 for quick CPU runs; every layer keeps >= 4 channels).
        dropout: dropout probability before the classifier.
        batch_norm: batch norm after every convolution; ``None`` takes the network's default
            (``False`` for AlexNet and VGG16 like the originals, ``True`` for GoogLeNet and Inception V3).
        kwargs: passed to the constructor, e.g. ``pooling="max"``.

    Returns:
        The network, in training mode, with freshly initialised weights.

    Raises:
        ConfigError: unknown ``name`` (the message lists the valid names), an unknown keyword
            argument, or an argument out of range.
    """
    constructor = NETWORKS[_check_name(name)]
    unknown = sorted(set(kwargs) - _EXTRA_KWARGS)
    if unknown:
        raise ConfigError(
            f"network {name!r}: unknown argument(s) {unknown}; extra ones allowed: {sorted(_EXTRA_KWARGS)}"
        )
    return constructor(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        width=width,
        dropout=dropout,
        batch_norm=batch_norm,
        **kwargs,
    )
