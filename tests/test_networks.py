"""Tests of the GAP/GMP networks and their registry (hcp_cam.networks).

Small widths (0.125) and small inputs keep every case to CPU-seconds; the spatial size of the
feature maps does not depend on the width, so the paper's 13/14/17 are checked at width 0.125.
"""

from __future__ import annotations

import pytest
import torch
from monai.networks.utils import convert_to_torchscript
from monai.visualize import CAM
from torch import nn

from hcp_cam.errors import ConfigError
from hcp_cam.networks import (
    NETWORKS,
    CAMNetwork,
    available_networks,
    default_input_size,
    get_network,
)
from hcp_cam.networks.blocks import MIN_CHANNELS, AxisConvs, scale_channels

# the bundle's export needs TorchScript, which torch 2.13 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(save|load)` is deprecated:DeprecationWarning")

NAMES = ["alexnet", "vgg16", "googlenet", "googlenet_gmp", "inception_v3"]
WIDTH = 0.125
# small inputs that every network accepts (inception_v3 3D needs its minimum, 75)
SMALL = {2: {"inception_v3": 48}, 3: {"inception_v3": 75}}
# feature-map size at the design input, from Zhou et al. 2016 and Szegedy et al. 2016
PAPER_FEATURE_SIZE = {"alexnet": 13, "vgg16": 14, "googlenet": 14, "googlenet_gmp": 14, "inception_v3": 17}


def small_size(name: str, spatial_dims: int) -> int:
    return SMALL[spatial_dims].get(name, 32)


def make(name: str, spatial_dims: int = 2, **kwargs) -> CAMNetwork:
    kwargs.setdefault("width", WIDTH)
    return get_network(name, spatial_dims=spatial_dims, **kwargs)


def rand_input(spatial_dims: int, size: int, batch: int = 2, channels: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, *([size] * spatial_dims))


def test_registry_names():
    assert available_networks() == sorted(NAMES)
    assert set(NETWORKS) == set(NAMES)
    assert default_input_size("inception_v3") == 299
    assert all(default_input_size(n) == 224 for n in NAMES if n != "inception_v3")


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_output_and_feature_shapes(name, spatial_dims):
    net = make(name, spatial_dims, num_classes=3, in_channels=2).eval()
    size = small_size(name, spatial_dims)
    x = rand_input(spatial_dims, size, batch=2, channels=2)
    with torch.no_grad():
        logits = net(x)
        feats = net.features(x)
    assert logits.shape == (2, 3)
    k = scale_channels(1024, WIDTH)
    assert feats.shape == (2, k, *([net.feature_size(size)] * spatial_dims))
    assert net.classifier_weights().shape == (3, k)
    assert net.spatial_dims == spatial_dims and net.num_classes == 3
    assert net.pooling == ("max" if name == "googlenet_gmp" else "avg")
    modules = dict(net.named_modules())
    target, fc = net.cam_layers()
    assert modules[target] is net.features and modules[fc] is net.classifier


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "googlenet", "inception_v3"])
def test_feature_size_at_default_input(name):
    net = make(name).eval()
    size = default_input_size(name)
    with torch.no_grad():
        feats = net.features(torch.randn(1, 1, size, size))
    assert tuple(feats.shape[2:]) == (PAPER_FEATURE_SIZE[name],) * 2
    assert net.feature_size(size) == PAPER_FEATURE_SIZE[name]
    if name == "alexnet":  # the Caffe input size gives the same maps
        assert net.feature_size(227) == 13


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ["alexnet", "vgg16", "googlenet", "inception_v3"])
def test_min_input_size_is_tight_and_checked(name, spatial_dims):
    net = make(name, spatial_dims).eval()
    m = net.min_input_size
    with torch.no_grad():
        assert net(rand_input(spatial_dims, m, batch=1)).shape == (1, 2)
        # one voxel less really breaks a layer of the backbone...
        with pytest.raises(RuntimeError):
            net.features(rand_input(spatial_dims, m - 1, batch=1))
        # ...and forward says so in words, before any convolution
        with pytest.raises(ValueError, match=f"too small; the minimum is {m} voxels"):
            net(rand_input(spatial_dims, m - 1, batch=1))


def test_wrong_input_rank_and_channels():
    net = make("alexnet", spatial_dims=3)
    with pytest.raises(ValueError, match="expects input .* with 5 dimensions"):
        net(torch.zeros(1, 1, 40, 40))
    with pytest.raises(ValueError, match="expects 1 input channel"):
        net(torch.zeros(1, 3, 40, 40, 40))


def test_gap_and_gmp_differ_with_the_same_weights():
    gap = make("googlenet").eval()
    gmp = make("googlenet_gmp").eval()
    gmp.load_state_dict(gap.state_dict())
    x = rand_input(2, 40)
    with torch.no_grad():
        feats = gap.features(x)
        torch.testing.assert_close(gmp.features(x), feats)
        expected_max = gap.classifier(feats.flatten(2).amax(-1))
        out_gap, out_gmp = gap(x), gmp(x)
    torch.testing.assert_close(out_gmp, expected_max)
    assert not torch.allclose(out_gap, out_gmp, atol=1e-4)


@pytest.mark.parametrize("name, spatial_dims", [(n, 2) for n in NAMES] + [("alexnet", 3), ("googlenet", 3)])
def test_cam_identity(name, spatial_dims):
    """logits == classifier(pool(features)); for GAP, logit_c == mean over positions of w_c . f + b_c."""
    net = make(name, spatial_dims).eval()
    x = rand_input(spatial_dims, small_size(name, spatial_dims))
    with torch.no_grad():
        logits = net(x)
        feats = net.features(x)
        torch.testing.assert_close(logits, net.classifier(net.pool(feats)))
        if net.pooling == "avg":
            w, b = net.classifier_weights(), net.classifier.bias
            maps = torch.einsum("ck,bkn->bcn", w, feats.flatten(2)) + b[None, :, None]
            torch.testing.assert_close(maps.mean(-1), logits, rtol=1e-4, atol=1e-5)


def test_monai_cam_maps_average_to_the_logits():
    net = make("alexnet").eval()
    x = rand_input(2, 64)
    cam = CAM(nn_module=net, target_layers=net.cam_layers()[0], fc_layers=net.cam_layers()[1])
    with torch.no_grad():
        logits = net(x)
    for cls in range(net.num_classes):
        raw = cam.compute_map(x, class_idx=[cls] * x.shape[0])  # (B, 1, h, w), before upsampling
        assert raw.shape[:2] == (2, 1) and raw.shape[2:] == (net.feature_size(64),) * 2
        torch.testing.assert_close(raw.flatten(1).mean(-1), logits[:, cls], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name, spatial_dims", [(n, 2) for n in NAMES] + [("alexnet", 3), ("inception_v3", 3)]
)
def test_torchscript(name, spatial_dims):
    net = make(name, spatial_dims).eval()
    scripted = torch.jit.script(net)
    x = rand_input(spatial_dims, small_size(name, spatial_dims))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))
        small = rand_input(spatial_dims, net.min_input_size - 1, batch=1)
        with pytest.raises(Exception, match=f"the minimum is {net.min_input_size}"):
            scripted(small)


@pytest.mark.parametrize("name, spatial_dims", [("googlenet", 2), ("inception_v3", 3)])
def test_monai_torchscript_export_round_trip(name, spatial_dims, tmp_path):
    """What MONAI's ckpt_export does: script, verify against eager, save, load back."""
    net = make(name, spatial_dims).eval()
    x = rand_input(spatial_dims, small_size(name, spatial_dims))
    path = tmp_path / "net.ts"
    convert_to_torchscript(net, path, verify=True, inputs=[x], rtol=1e-4, atol=1e-5)
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.parametrize(
    "spatial_dims, reverse, kernels",
    [
        (2, False, [(1, 7), (7, 1)]),
        (2, True, [(7, 1), (1, 7)]),
        (3, False, [(1, 1, 7), (1, 7, 1), (7, 1, 1)]),
    ],
)
def test_axis_convs_factorise_along_each_axis(spatial_dims, reverse, kernels):
    block = AxisConvs(spatial_dims, 4, 5, 6, kernel_size=7, batch_norm=False, reverse=reverse)
    convs = [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    assert [tuple(c.kernel_size) for c in convs] == kernels
    assert [c.out_channels for c in convs][-1] == 6 and all(c.out_channels == 5 for c in convs[:-1])
    x = torch.randn(1, 4, *range(9, 9 + spatial_dims))
    assert block(x).shape == (1, 6, *x.shape[2:])  # every step keeps the size


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match="resnet") as err:
        get_network("resnet")
    for name in NAMES:
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="alexnet, googlenet"):
        default_input_size("ResNet")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"width": 0.0}, "width"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 0}, "num_classes"),
        ({"pooling": "sum"}, "pooling"),
        ({"poolin": "max"}, "unknown argument"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        get_network("vgg16", **{"width": WIDTH, **kwargs})


def test_googlenet_gmp_refuses_avg_pooling():
    with pytest.raises(ConfigError, match="googlenet_gmp"):
        get_network("googlenet_gmp", width=WIDTH, pooling="avg")


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_width_scales_channels_and_parameters():
    counts = [n_params(make("alexnet", width=w)) for w in (0.125, 0.25, 0.5)]
    assert counts[0] < counts[1] < counts[2]
    # conv weights grow ~ width^2: doubling the width gives clearly more than twice the parameters
    assert counts[2] > 3 * counts[1]
    assert make("alexnet", width=0.5).classifier.in_features == 512
    tiny = make("googlenet", width=0.001)
    convs = [m for m in tiny.modules() if isinstance(m, nn.Conv2d)]
    assert min(m.out_channels for m in convs) == MIN_CHANNELS


def test_batch_norm_defaults():
    def has_bn(net):
        return any(isinstance(m, nn.BatchNorm2d) for m in net.modules())

    assert not has_bn(make("alexnet")) and not has_bn(make("vgg16"))
    assert has_bn(make("googlenet")) and has_bn(make("inception_v3"))
    assert has_bn(make("alexnet", batch_norm=True))
    assert not has_bn(make("inception_v3", batch_norm=False))


def test_gradient_steps_reduce_loss_on_a_fixed_batch():
    net = make("alexnet")
    x = rand_input(2, 64, batch=8)
    x[4:, :, 20:40, 20:40] += 2.0  # class 1 has a bright square
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def eval_loss() -> float:
        net.eval()
        with torch.no_grad():
            return float(loss_fn(net(x), y))

    before = eval_loss()
    net.train()
    for _ in range(10):
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    after = eval_loss()
    assert after < 0.9 * before, (before, after)
