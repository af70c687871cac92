"""Maps of a regressor's one output, and one-vs-rest maps of a multi-class network.

A planted regressor reads a known region: its output is ``a * mean(x inside the region) + b``, so its
CAM must be ``a * x`` inside the region and 0 outside, its spatial mean plus ``b`` the output, and
Grad-CAM of the output must agree with MONAI's.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from monai.networks.layers.factories import Pool
from monai.visualize import CAM, GradCAM, GradCAMpp
from test_cam_inferer import _formula, _identity, _net_and_batch

from hcp_cam.cam import CAMInferer
from hcp_cam.cam.inferer import one_vs_rest
from hcp_cam.errors import ConfigError
from hcp_cam.networks import get_network

SHAPES = {2: (12, 14), 3: (8, 10, 6)}
SLOPE, BIAS = 3.0, -0.5


class RegionFeatures(nn.Module):
    """Two feature maps: the input inside the region, and outside it (times a gain of 1, a parameter
    so that gradients reach this layer, as Grad-CAM needs)."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x * self.region, x * (1 - self.region)], dim=1) * self.gain


class PlantedRegressor(nn.Module):
    """``output = SLOPE * mean(x * region) + BIAS``: a GAP head whose only weight is on the region channel."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        shape = SHAPES[spatial_dims]
        region = torch.zeros(1, 1, *shape)
        region[(0, 0, *[slice(2, 5)] * spatial_dims)] = 1.0
        self.features = RegionFeatures(region)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.classifier = nn.Linear(2, 1)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[SLOPE, 0.0]]))
            self.classifier.bias.fill_(BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))

    def cam_layers(self) -> tuple[str, str]:
        return ("features", "classifier")


def _inputs(spatial_dims: int, batch: int = 3) -> torch.Tensor:
    torch.manual_seed(1)
    # positive inputs of different levels: each sample its own output
    return torch.rand(batch, 1, *SHAPES[spatial_dims]) + torch.arange(batch).view(
        batch, *[1] * (spatial_dims + 1)
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cam_of_a_planted_regressor_is_its_formula(spatial_dims):
    net = PlantedRegressor(spatial_dims).eval()
    x = _inputs(spatial_dims)
    out = CAMInferer("cam", upsample=False)(x, net)
    region = net.features.region
    expected = SLOPE * x * region  # sum_k w_k f_k: only the region channel has a weight
    torch.testing.assert_close(out.maps, expected, rtol=1e-6, atol=1e-6)
    assert (out.maps[:, :, region[0, 0] == 0] == 0).all()  # nothing outside the region
    assert torch.equal(out.class_idx, torch.zeros(3, dtype=torch.long))  # the one output
    # GAP: the map's spatial mean plus the bias is the output, the planted linear function
    with torch.no_grad():
        output = net(x)[:, 0]
    planted = SLOPE * (x * region).flatten(1).mean(1) + BIAS
    torch.testing.assert_close(output, planted, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.maps.flatten(1).mean(1) + BIAS, output, rtol=1e-6, atol=1e-6)
    # and MONAI's CAM, which applies the whole linear layer at every location (M + b)
    # (the features keep the input size: MONAI's upsampling is the identity here)
    theirs = CAM(copy.deepcopy(net), "features", "classifier", postprocessing=_identity)
    torch.testing.assert_close(out.maps + BIAS, theirs(x, class_idx=[0, 0, 0]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("method, monai_cls", [("gradcam", GradCAM), ("gradcampp", GradCAMpp)])
def test_gradient_maps_of_the_output_equal_monai(spatial_dims, method, monai_cls):
    net = PlantedRegressor(spatial_dims).eval()
    x = _inputs(spatial_dims)
    ours = CAMInferer(method, upsample=False)(x, net)
    theirs_fn = monai_cls(copy.deepcopy(net), target_layers="features", postprocessing=_identity)
    for b in range(x.shape[0]):
        theirs = theirs_fn(x[b : b + 1], class_idx=0)
        torch.testing.assert_close(ours.maps[b : b + 1], theirs, rtol=1e-4, atol=1e-7)
    if method == "gradcam":  # d out / d f_k = w_k / N: Grad-CAM is relu(CAM) / N
        cam = CAMInferer("cam", upsample=False)(x, net).maps
        torch.testing.assert_close(ours.maps, torch.relu(cam) / cam[0, 0].numel(), rtol=1e-5, atol=1e-7)
    assert ours.maps.abs().sum() > 0


@pytest.mark.parametrize("arch", ["alexnet", "googlenet", "inception_v3"])
def test_real_one_output_networks_cam_equals_formula_and_monai(arch):
    torch.manual_seed(0)
    size = 75 if arch == "inception_v3" else 48
    net = get_network(arch, num_classes=1, width=0.125, batch_norm=True).eval()
    x = torch.randn(2, 1, size, size)
    out = CAMInferer("cam", upsample=False)(x, net)
    assert out.logits.shape == (2, 1)
    torch.testing.assert_close(
        out.maps, _formula(net, x, torch.zeros(2, dtype=torch.long)), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        out.maps.flatten(1).mean(1) + net.classifier.bias[0], out.logits[:, 0], rtol=1e-4, atol=1e-5
    )
    up = CAMInferer("cam")(x, net).maps  # upsampled as MONAI upsamples
    theirs = CAM(copy.deepcopy(net), *net.cam_layers(), postprocessing=_identity)
    torch.testing.assert_close(up + net.classifier.bias[0], theirs(x, class_idx=[0, 0]), rtol=1e-4, atol=1e-5)


def test_3d_one_output_network():
    torch.manual_seed(0)
    net = get_network("alexnet", spatial_dims=3, num_classes=1, width=0.125).eval()
    x = torch.randn(1, 1, 40, 40, 40)
    out = CAMInferer("cam")(x, net)
    assert out.logits.shape == (1, 1) and out.maps.shape == (1, 1, 40, 40, 40)


def test_one_vs_rest_map_is_the_class_minus_the_mean_of_the_others():
    net, x, _ = _net_and_batch(2, num_classes=3)
    inferer = CAMInferer("cam", upsample=False)
    every = inferer(x, net, class_idx="all").maps
    for c in range(3):
        out = inferer(x, net, class_idx=one_vs_rest(c))
        others = [k for k in range(3) if k != c]
        expected = every[:, c] - every[:, others].mean(1)
        torch.testing.assert_close(out.maps[:, 0], expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(out.class_idx, torch.full((4,), c))
    two, x2, _ = _net_and_batch(2, num_classes=2)
    # two classes: one-vs-rest of class 1 is the difference map
    torch.testing.assert_close(
        inferer(x2, two, class_idx=one_vs_rest(1)).maps, inferer(x2, two, class_idx="difference").maps
    )
    with pytest.raises(ConfigError, match="vs_rest:3"):
        inferer(x, net, class_idx=one_vs_rest(3))
    with pytest.raises(ConfigError, match="vs_rest"):
        CAMInferer("cam", class_idx="vs_rest:x")
