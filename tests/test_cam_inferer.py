"""CAMInferer: CAM equals its formula and MONAI's CAM, Grad-CAM(++) equals MONAI's per sample."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from monai.data import MetaTensor
from monai.networks.layers.factories import Conv, Norm, Pool
from monai.visualize import CAM, GradCAM, GradCAMpp

from hcp_cam.cam import CAMInferer, CAMOutput
from hcp_cam.errors import ConfigError

SHAPES = {2: (16, 20), 3: (12, 14, 10)}


class TinyCAMNet(nn.Module):
    """A real (small) network with the ``CAMNetwork`` interface: features, pool, dropout, classifier."""

    def __init__(
        self, spatial_dims: int = 2, num_classes: int = 3, pooling: str = "avg", width: int = 6
    ) -> None:
        super().__init__()
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.features = nn.Sequential(
            conv(1, 4, 3, padding=1),
            norm(4),
            nn.ReLU(inplace=True),
            Pool[Pool.MAX, spatial_dims](2),
            conv(4, width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pooling = pooling
        kind = Pool.ADAPTIVEAVG if pooling == "avg" else Pool.ADAPTIVEMAX
        self.pool = Pool[kind, spatial_dims](1)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(width, num_classes)
        with torch.no_grad():  # non-trivial eval-mode batch norm
            self.features[1].running_mean.uniform_(-0.2, 0.2)
            self.features[1].running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x)).flatten(1)))

    def cam_layers(self) -> tuple[str, str]:
        return ("features", "classifier")


class NoHeadNet(nn.Module):
    """A classifier without a global-pooling head: CAM does not apply, Grad-CAM does."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


def _identity(x):
    return x


def _net_and_batch(
    spatial_dims: int, pooling: str = "avg", num_classes: int = 3, batch: int = 4, seed: int = 0
):
    """A network and a batch whose predicted classes differ within the batch (checked)."""
    for s in range(seed, seed + 50):
        torch.manual_seed(s)
        net = TinyCAMNet(spatial_dims, num_classes, pooling).eval()
        # a different level per sample, so the GAP features (and the predictions) differ
        levels = torch.linspace(-2.0, 2.0, batch).view(batch, 1, *[1] * spatial_dims)
        x = torch.randn(batch, 1, *SHAPES[spatial_dims]) + levels
        with torch.no_grad():
            pred = net(x).argmax(1)
        if len(pred.unique()) > 1:
            return net, x, pred
    raise AssertionError("no seed gave mixed predictions")


def _formula(net: TinyCAMNet, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """M_c(x) = sum_k w_k^c f_k(x), written as a plain loop over samples and channels."""
    with torch.no_grad():
        feats = net.features(x)
    out = torch.zeros(x.shape[0], 1, *feats.shape[2:])
    for b, c in enumerate(classes.tolist()):
        for k in range(feats.shape[1]):
            out[b, 0] += net.classifier.weight[c, k] * feats[b, k]
    return out


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_cam_equals_formula_and_logits(spatial_dims, pooling):
    net, x, pred = _net_and_batch(spatial_dims, pooling)
    out = CAMInferer("cam", upsample=False)(x, net)
    assert isinstance(out, CAMOutput)
    with torch.no_grad():
        assert torch.allclose(out.logits, net(x), atol=1e-6)
    assert torch.equal(out.class_idx, pred)
    torch.testing.assert_close(out.maps, _formula(net, x, pred), rtol=1e-5, atol=1e-6)
    named = CAMInferer("cam", target_layer="features", upsample=False)(x, net)  # the feature layer by name
    assert torch.equal(named.maps, out.maps)
    if pooling == "avg":  # GAP: spatial mean of M_c plus the bias is the logit of c
        means = out.maps.flatten(2).mean(2)[:, 0] + net.classifier.bias[pred]
        torch.testing.assert_close(means, out.logits.gather(1, pred[:, None])[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_cam_matches_monai_cam_per_sample_targets(spatial_dims, pooling):
    net, x, pred = _net_and_batch(spatial_dims, pooling)
    targets = (pred + 1) % 3  # each sample its own, non-predicted class
    ours = CAMInferer("cam")(x, net, class_idx=targets)
    monai_cam = CAM(
        copy.deepcopy(net), target_layers="features", fc_layers="classifier", postprocessing=_identity
    )
    theirs = monai_cam(x, class_idx=targets)
    assert ours.maps.shape == theirs.shape == (4, 1, *SHAPES[spatial_dims])
    # MONAI applies the whole linear layer at every location: its raw map is M_c + b_c
    bias = net.classifier.bias[targets].view(-1, 1, *[1] * spatial_dims)
    torch.testing.assert_close(ours.maps + bias, theirs, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.class_idx, targets)


def test_class_idx_int_all_and_difference():
    net, x, pred = _net_and_batch(2, num_classes=2)
    inferer = CAMInferer("cam", upsample=False)
    all_maps = inferer(x, net, class_idx="all")
    assert all_maps.maps.shape[:2] == (4, 2)
    assert torch.equal(all_maps.class_idx, torch.tensor([[0, 1]] * 4))
    for c in range(2):
        single = inferer(x, net, class_idx=c)
        assert torch.equal(single.class_idx, torch.full((4,), c))
        torch.testing.assert_close(all_maps.maps[:, c : c + 1], single.maps, rtol=0, atol=1e-6)
        torch.testing.assert_close(single.maps, _formula(net, x, torch.full((4,), c)), rtol=1e-5, atol=1e-6)
    diff = inferer(x, net, class_idx="difference")
    assert diff.maps.shape[:2] == (4, 1)
    assert torch.equal(diff.class_idx, torch.tensor([[1, 0]] * 4))
    torch.testing.assert_close(
        diff.maps[:, 0], all_maps.maps[:, 1] - all_maps.maps[:, 0], rtol=1e-5, atol=1e-6
    )
    # the constructor's class_idx is the default, a call's argument overrides it
    assert torch.equal(CAMInferer("cam", class_idx=1)(x, net).class_idx, torch.ones(4, dtype=torch.long))
    assert torch.equal(CAMInferer("cam", class_idx=1)(x, net, class_idx="predicted").class_idx, pred)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradcam_batch_equals_monai_per_sample(spatial_dims):
    net, x, pred = _net_and_batch(spatial_dims)
    ours = CAMInferer("gradcam")(x, net)
    assert torch.equal(ours.class_idx, pred)
    monai_gc = GradCAM(copy.deepcopy(net), target_layers="features", postprocessing=_identity)
    for b in range(x.shape[0]):
        theirs = monai_gc(x[b : b + 1], class_idx=int(pred[b]))
        torch.testing.assert_close(ours.maps[b : b + 1], theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradcampp_batch_equals_monai_per_sample(spatial_dims):
    net, x, pred = _net_and_batch(spatial_dims)
    targets = torch.tensor([0, 1, 2, 1])
    ours = CAMInferer("gradcampp")(x, net, class_idx=targets)
    monai_gcpp = GradCAMpp(copy.deepcopy(net), target_layers="features", postprocessing=_identity)
    for b in range(x.shape[0]):
        theirs = monai_gcpp(x[b : b + 1], class_idx=int(targets[b]))
        torch.testing.assert_close(ours.maps[b : b + 1], theirs, rtol=1e-4, atol=1e-6)
    assert ours.maps.abs().sum() > 0


def test_gradcam_at_a_named_inner_layer_equals_monai_per_sample():
    net, x, pred = _net_and_batch(2)
    ours = CAMInferer("gradcam", target_layer="features.0", upsample=False)(x, net)
    assert ours.maps.shape == (4, 1, *SHAPES[2])  # the first conv keeps the input size
    monai_gc = GradCAM(copy.deepcopy(net), target_layers="features.0", postprocessing=_identity)
    for b in range(x.shape[0]):
        theirs = monai_gc(x[b : b + 1], class_idx=int(pred[b]))
        torch.testing.assert_close(ours.maps[b : b + 1], theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradcam_on_gap_feature_layer_is_relu_cam_over_n(spatial_dims):
    """For a GAP head, d logit_c / d f_k(x) = w_k^c / N at every one of the N feature voxels, so
    Grad-CAM at the feature layer is exactly relu(M_c) / N (maps compared before upsampling)."""
    net, x, _ = _net_and_batch(spatial_dims)
    cam = CAMInferer("cam", class_idx="all", upsample=False)(x, net)
    grad = CAMInferer("gradcam", class_idx="all", upsample=False)(x, net)
    n_voxels = cam.maps[0, 0].numel()
    torch.testing.assert_close(grad.maps, torch.relu(cam.maps) / n_voxels, rtol=1e-5, atol=1e-7)
    positive = cam.maps > 0
    assert positive.any() and (~positive).any()
    pair = torch.stack([cam.maps[positive], grad.maps[positive]])
    assert torch.corrcoef(pair)[0, 1] > 0.9999


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcampp"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_upsampled_to_input_size_and_metadata_kept(method, spatial_dims):
    net, x, _ = _net_and_batch(spatial_dims)
    shape = (13, 17) if spatial_dims == 2 else (11, 14, 9)  # odd sizes: pooling floors them
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    xm = MetaTensor(torch.randn(2, 1, *shape), affine=affine)
    out = CAMInferer(method)(xm, net)
    assert out.maps.shape == (2, 1, *shape)
    assert isinstance(out.maps, MetaTensor)
    assert torch.equal(torch.as_tensor(out.maps.affine), affine.double())
    small = CAMInferer(method, upsample=False)(xm, net)
    assert small.maps.shape[2:] != out.maps.shape[2:]


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcampp"])
def test_network_state_restored(method):
    net, x, _ = _net_and_batch(2)
    net.train()
    net.features[1].eval()  # a mixed state must come back as it was
    net.features[0].weight.requires_grad_(False)
    modes = [m.training for m in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    CAMInferer(method, class_idx="all")(x, net)
    if method != "cam":
        CAMInferer(method, target_layer="features.4")(x, net)
    assert [m.training for m in net.modules()] == modes
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())


def test_cam_without_gap_head_raises_and_gradcam_works():
    net = NoHeadNet().eval()
    x = torch.randn(3, 1, 8, 8)
    with pytest.raises(ConfigError, match="gradcam"):
        CAMInferer("cam")(x, net)
    with pytest.raises(ConfigError, match="target_layer|no layer"):
        CAMInferer("gradcam")(x, net)
    out = CAMInferer("gradcam", target_layer="body")(x, net)
    assert out.maps.shape == (3, 1, 8, 8)
    monai_gc = GradCAM(copy.deepcopy(net), target_layers="body", postprocessing=_identity)
    for b in range(3):
        theirs = monai_gc(x[b : b + 1], class_idx=int(out.class_idx[b]))
        torch.testing.assert_close(out.maps[b : b + 1], theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, call_idx, match",
    [
        ({"method": "scorecam"}, None, "method"),
        ({"method": "cam", "target_layer": "features.0"}, None, "feature layer"),
        ({"class_idx": "largest"}, None, "class_idx"),
        ({}, 3, "out of range"),
        ({}, [0, 1], "entries for a batch of 4"),
        ({}, "difference", "two-class"),
    ],
)
def test_invalid_configuration(kwargs, call_idx, match):
    net, x, _ = _net_and_batch(2)
    with pytest.raises(ConfigError, match=match):
        CAMInferer(**kwargs)(x, net, class_idx=call_idx)


def _real_network_and_batch(name: str, spatial_dims: int):
    from hcp_cam.networks import get_network

    torch.manual_seed(0)
    net = get_network(name, spatial_dims=spatial_dims, num_classes=2, width=0.0625).eval()
    want = 3 if spatial_dims == 2 else 2  # feature maps of at least 3x3 (2x2x2): a map, not a scalar
    size = next(s for s in range(net.min_input_size, 400) if net.feature_size(s) >= want)
    x = torch.randn(2, 1, *[size] * spatial_dims)
    return net, x


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ["alexnet", "vgg16", "googlenet", "googlenet_gmp", "inception_v3"])
def test_real_networks_cam_and_gradcam_match_monai(name, spatial_dims):
    net, x = _real_network_and_batch(name, spatial_dims)
    targets = torch.tensor([0, 1])
    out = CAMInferer("cam")(x, net, class_idx=targets)
    with torch.no_grad():
        torch.testing.assert_close(out.logits, net(x), rtol=1e-5, atol=1e-6)
    assert out.maps.shape == (2, 1, *x.shape[2:])
    features, classifier = net.cam_layers()
    monai_cam = CAM(
        copy.deepcopy(net), target_layers=features, fc_layers=classifier, postprocessing=_identity
    )
    bias = net.classifier.bias[targets].view(-1, 1, *[1] * spatial_dims)
    scale = float(out.maps.abs().max())
    torch.testing.assert_close(out.maps + bias, monai_cam(x, class_idx=targets), rtol=1e-4, atol=1e-5 * scale)
    grad = CAMInferer("gradcam")(x, net, class_idx=targets)
    monai_gc = GradCAM(copy.deepcopy(net), target_layers=features, postprocessing=_identity)
    for b in range(2):
        theirs = monai_gc(x[b : b + 1], class_idx=int(targets[b]))
        torch.testing.assert_close(
            grad.maps[b : b + 1], theirs, rtol=1e-4, atol=1e-5 * float(theirs.detach().abs().max()) + 1e-12
        )
