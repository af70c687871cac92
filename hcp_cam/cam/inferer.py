"""Class Activation Maps as a MONAI :class:`~monai.inferers.Inferer`: CAM, Grad-CAM and Grad-CAM++.

``CAMInferer(method)(inputs, network)`` returns the logits and the raw (not normalised) maps of a
batch in one call. ``cam`` needs a network with a global-pooling head (``features``, ``pool``,
``dropout``, ``classifier: nn.Linear``, see ``docs/architecture.md``) and costs one forward pass:

    M_c(x) = sum_k w_k^c f_k(x)

with ``f_k`` the last feature maps and ``w^c`` the classifier row of class ``c`` (Zhou et al.,
CVPR 2016). The classifier bias is not added: ``monai.visualize.CAM`` applies the whole linear
layer at every location, so its raw map is ``M_c + b_c``. For a GAP head, the spatial mean of
``M_c`` plus ``b_c`` is the logit of class ``c``.

``gradcam`` and ``gradcampp`` work at any named layer and are batch-correct: every sample gets the
gradient of its own target score, from one backward pass of ``sum_b score_b`` (samples do not
interact in eval mode). MONAI's ``GradCAM`` sums ``logits[:, targets]`` over the whole batch when
predictions differ within a batch, ``GradCAMpp`` fails for a batch of more than one, and both leave
hooks registered on the network; the formulas here are theirs, checked per sample in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer

from hcp_cam.errors import ConfigError

__all__ = ["CAMInferer", "CAMOutput", "METHODS", "has_cam_head", "one_vs_rest", "upsample_maps"]

METHODS = ("cam", "gradcam", "gradcampp")
_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
_VS_REST = re.compile(r"^vs_rest:(\d+)$")


def one_vs_rest(class_index: int) -> str:
    """The ``class_idx`` of the one-vs-rest map of a class: ``M_c - mean_{c' != c} M_c'``, whose
    classifier row is ``w_c - mean_{c' != c} w_c'`` (for two classes, ``"difference"``)."""
    return f"vs_rest:{int(class_index)}"


ClassIdx = None | str | int | Sequence[int] | torch.Tensor


class CAMOutput(NamedTuple):
    """What :class:`CAMInferer` returns for a batch of ``B`` inputs and ``C`` classes.

    Attributes:
        logits: ``(B, C)`` network outputs in eval mode (before softmax).
        maps: ``(B, n_maps, *spatial)`` raw maps, not normalised; ``n_maps`` is 1 for one class
            per sample and for ``"difference"``, ``C`` for ``"all"``. ``spatial`` is the input's
            when upsampled, the target layer's otherwise. A ``MetaTensor`` with the input's
            metadata when the input is one and the maps are upsampled onto its grid.
        class_idx: ``(B,)`` the class of each sample's map, or ``(B, n_maps)`` for ``"all"``
            (``0..C-1``) and for ``"difference"`` (``[1, 0]``: the map is class 1 minus class 0).
    """

    logits: torch.Tensor
    maps: torch.Tensor
    class_idx: torch.Tensor


def has_cam_head(network: nn.Module) -> bool:
    """Whether ``network`` has the global-pooling head that plain CAM needs.

    That is a callable ``features``, a ``pool`` and a ``classifier`` that is an ``nn.Linear``
    (``dropout`` is optional), the ``CAMNetwork`` interface of ``docs/architecture.md``.
    """
    return (
        callable(getattr(network, "features", None))
        and callable(getattr(network, "pool", None))
        and isinstance(getattr(network, "classifier", None), nn.Linear)
    )


def upsample_maps(maps: torch.Tensor, spatial_size: Sequence[int], mode: str = "auto") -> torch.Tensor:
    """Resize ``(B, n, *spatial)`` maps to ``spatial_size``.

    Args:
        maps: ``(B, n, *spatial)`` with 1 to 3 spatial dimensions.
        spatial_size: the target spatial shape (the network input's).
        mode: ``"auto"`` for (bi/tri)linear interpolation with ``align_corners=False`` (what
            ``monai.visualize`` uses), or any ``torch.nn.functional.interpolate`` mode.

    Returns:
        ``(B, n, *spatial_size)``; ``maps`` itself when the size already matches.
    """
    spatial_size = tuple(int(s) for s in spatial_size)
    if tuple(maps.shape[2:]) == spatial_size:
        return maps
    ndim = len(spatial_size)
    if mode == "auto":
        mode = _LINEAR_MODES[ndim]
    align = False if mode in ("linear", "bilinear", "bicubic", "trilinear") else None
    return F.interpolate(maps, size=spatial_size, mode=mode, align_corners=align)


class CAMInferer(Inferer):
    """Logits and class activation maps of a batch, as a MONAI inferer.

    Args:
        method: ``"cam"`` (needs a GAP/GMP head, one forward pass), ``"gradcam"`` or
            ``"gradcampp"`` (any layer, one forward and one backward pass per map).
        target_layer: name of the module (``network.named_modules()``) whose output the gradient
            methods use; ``None`` is the feature layer (``network.cam_layers()[0]``). ``cam``
            always uses the feature layer (``None`` or its name; another name raises at the call).
        class_idx: which class each map is for. ``None`` (or ``"predicted"``): each sample's
            predicted class; an ``int``: that class for every sample; a sequence or ``(B,)`` tensor:
            one class per sample; ``"all"``: one map per class; ``"difference"``: class 1 minus
            class 0 of a two-class network (``w_1 - w_0``, the map that drives the decision);
            ``"vs_rest:c"`` (:func:`one_vs_rest`): class ``c`` minus the mean of the others. A
            one-output network (a regressor) has one "class", 0: its map is that of the output.
        upsample: resize the maps to the input's spatial size.
        mode: interpolation mode, ``"auto"`` = bilinear (2D) or trilinear (3D), ``align_corners=False``.

    Raises:
        ConfigError: unknown ``method`` or ``class_idx`` keyword.

    Example::

        out = CAMInferer("cam", class_idx="all")(images, network)  # images (B, 1, H, W)
        out.maps.shape  # (B, num_classes, H, W)
    """

    def __init__(
        self,
        method: str = "cam",
        target_layer: str | None = None,
        class_idx: ClassIdx = None,
        upsample: bool = True,
        mode: str = "auto",
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"CAM method must be one of {METHODS}, got {method!r}")
        _check_keyword(class_idx)
        self.method = method
        self.target_layer = target_layer
        self.class_idx = class_idx
        self.upsample = upsample
        self.mode = mode

    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: nn.Module, class_idx: ClassIdx = None, *args: Any, **kwargs: Any
    ) -> CAMOutput:
        """Compute logits and maps for ``inputs``.

        Args:
            inputs: ``(B, C_in, *spatial)`` with 1 to 3 spatial dimensions (a ``MetaTensor`` keeps
                its metadata on the upsampled maps).
            network: the model; its train/eval state and its parameters' ``requires_grad`` and
                ``.grad`` are as before after the call, and no hook stays registered.
            class_idx: overrides the constructor's ``class_idx`` for this call (``None`` keeps it).
            args, kwargs: passed to ``network`` (only where the network is called as a whole).

        Returns:
            :class:`CAMOutput` ``(logits (B, C), maps (B, n_maps, *spatial), class_idx)``.

        Raises:
            ConfigError: ``cam`` on a network without a GAP/GMP head, an unknown target layer,
                a class index out of range or a per-sample list of the wrong length.
        """
        spec = self.class_idx if class_idx is None else class_idx
        _check_keyword(spec)
        if inputs.ndim - 2 not in _LINEAR_MODES:
            raise ConfigError(
                f"inputs must be (B, C, *spatial) with 1-3 spatial dims, got shape {tuple(inputs.shape)}"
            )
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        check = getattr(network, "check_input_size", None)
        if callable(check):  # the manual feature/head path bypasses forward()'s size check
            check(list(x.shape))
        with _inference_state(network, freeze=self.method != "cam"):
            if self.method == "cam":
                logits, maps, targets = self._cam(x, network, spec)
            else:
                logits, maps, targets = self._gradient_cam(x, network, spec, *args, **kwargs)
        if self.upsample:
            maps = upsample_maps(maps, x.shape[2:], self.mode)
            if isinstance(inputs, MetaTensor):
                maps = MetaTensor(maps, meta=dict(inputs.meta))
                maps.is_batch = inputs.is_batch
        return CAMOutput(logits.detach(), maps.detach(), targets)

    def _cam(self, x: torch.Tensor, network: nn.Module, spec: ClassIdx):
        if not has_cam_head(network):
            raise ConfigError(
                f"method 'cam' needs a global-pooling head (features, pool, classifier: nn.Linear); "
                f"{type(network).__name__} has none: use method='gradcam' with a target_layer"
            )
        feature_name = _cam_layer_names(network)[0]
        if self.target_layer not in (None, feature_name):
            raise ConfigError(
                f"method 'cam' always uses the feature layer {feature_name!r}, not {self.target_layer!r}; "
                "other layers need 'gradcam'/'gradcampp'"
            )
        with torch.no_grad():
            feats = network.features(x)
            weight = network.classifier.weight  # (C, K)
            if feats.shape[1] != weight.shape[1]:
                raise ConfigError(
                    f"classifier of {type(network).__name__} takes {weight.shape[1]} features, "
                    f"its feature layer gives {feats.shape[1]}"
                )
            logits = _head(network, feats)
            coef, targets = _coefficients(spec, logits)
            # per-sample classifier rows (B, n, K): one-hot rows pick w^c exactly
            rows = torch.einsum("bnc,ck->bnk", coef, weight)
            maps = torch.einsum("bnk,bk...->bn...", rows, feats)
        return logits, maps, targets

    def _gradient_cam(self, x: torch.Tensor, network: nn.Module, spec: ClassIdx, *args: Any, **kwargs: Any):
        feature_name = _cam_layer_names(network)[0]
        if self.target_layer in (None, feature_name) and has_cam_head(network):
            with torch.enable_grad():
                # a detached leaf: gradients stop here, parameters' .grad stay untouched
                acti = network.features(x).detach().requires_grad_(True)
                logits = _head(network, acti.clone())
        else:
            name = self.target_layer if self.target_layer is not None else feature_name
            layer = _find_module(network, name)
            captured: list[torch.Tensor] = []

            def hook(_module: nn.Module, _inp: Any, out: Any) -> torch.Tensor:
                if not isinstance(out, torch.Tensor):
                    raise ConfigError(f"target layer {name!r} returns {type(out).__name__}, not a tensor")
                leaf = out.detach().requires_grad_(True)
                captured.append(leaf)
                return leaf.clone()  # later in-place ops (ReLU(inplace=True)) must not touch the leaf

            handle = layer.register_forward_hook(hook)
            try:
                with torch.enable_grad():
                    logits = network(x, *args, **kwargs)
            finally:
                handle.remove()
            if len(captured) != 1:
                raise ConfigError(
                    f"target layer {name!r} ran {len(captured)} times in one forward pass; need once"
                )
            acti = captured[0]
        coef, targets = _coefficients(spec, logits.detach())
        n_maps = coef.shape[1]
        maps = []
        for n in range(n_maps):
            score = (coef[:, n] * logits).sum(1)  # (B,) each sample's own target score
            (grad,) = torch.autograd.grad(score.sum(), acti, retain_graph=n < n_maps - 1)
            maps.append(
                _gradcam_map(acti.detach(), grad, score.detach(), plus_plus=self.method == "gradcampp")
            )
        return logits.detach(), torch.cat(maps, dim=1), targets


def _gradcam_map(
    acti: torch.Tensor, grad: torch.Tensor, score: torch.Tensor, plus_plus: bool
) -> torch.Tensor:
    """Grad-CAM (Selvaraju 2017) or Grad-CAM++ (Chattopadhyay 2018) from ``(B, K, *s)`` tensors.

    Returns:
        ``(B, 1, *s)`` ``relu(sum_k a_k A_k)``; Grad-CAM: ``a_k`` = spatial mean of the gradient;
        Grad-CAM++: the weights of ``monai.visualize.GradCAMpp`` with ``exp(score)`` per sample.
    """
    b, k = grad.shape[:2]
    ones = (1,) * (grad.ndim - 2)
    if not plus_plus:
        weights = grad.reshape(b, k, -1).mean(2)
    else:
        alpha_nr = grad.pow(2)
        alpha_dr = 2 * alpha_nr + (acti * grad.pow(3)).reshape(b, k, -1).sum(-1).view(b, k, *ones)
        alpha_dr = torch.where(alpha_dr != 0.0, alpha_dr, torch.ones_like(alpha_dr))
        alpha = alpha_nr / (alpha_dr + 1e-7)
        relu_grad = F.relu(score.exp().view(b, 1, *ones) * grad)
        weights = (alpha * relu_grad).reshape(b, k, -1).sum(-1)
    return F.relu((weights.view(b, k, *ones) * acti).sum(1, keepdim=True))


def _head(network: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """The network's head (pool, flatten, dropout, classifier) on ``(B, K, *s)`` features -> ``(B, C)``."""
    pooled = network.pool(feats).flatten(1)
    dropout = getattr(network, "dropout", None)
    if dropout is not None:
        pooled = dropout(pooled)
    return network.classifier(pooled)


def _cam_layer_names(network: nn.Module) -> tuple[str, str]:
    names = getattr(network, "cam_layers", None)
    return tuple(names()) if callable(names) else ("features", "classifier")  # type: ignore[return-value]


def _find_module(network: nn.Module, name: str) -> nn.Module:
    modules = dict(network.named_modules())
    if name not in modules:
        some = ", ".join(repr(n) for n in list(modules)[1:12])
        raise ConfigError(f"{type(network).__name__} has no layer {name!r}; layers include {some}")
    return modules[name]


def _check_keyword(spec: ClassIdx) -> None:
    if isinstance(spec, str) and spec not in ("predicted", "all", "difference") and not _VS_REST.match(spec):
        raise ConfigError(
            "class_idx must be None, 'predicted', 'all', 'difference', 'vs_rest:<class>', an int or per-sample "
            f"ints; got {spec!r}"
        )


def _coefficients(spec: ClassIdx, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map ``class_idx`` to coefficients ``(B, n_maps, C)`` on the classes, and the class indices.

    Every map is ``sum_c coef[b, n, c] * (map of class c)``: one-hot rows for single classes,
    ``e_1 - e_0`` for the difference.
    """
    b, c = logits.shape
    device = logits.device
    eye = torch.eye(c, dtype=logits.dtype, device=device)
    if spec is None or isinstance(spec, str) and spec == "predicted":
        targets = logits.argmax(1)
    elif isinstance(spec, str) and spec == "all":
        targets = torch.arange(c, device=device).expand(b, c).clone()
        return eye.expand(b, c, c).clone(), targets
    elif isinstance(spec, str) and (m := _VS_REST.match(spec)):
        k = int(m[1])
        if c < 2 or not 0 <= k < c:
            raise ConfigError(f"class_idx {spec!r} needs a class 0..{c - 1} of a network with 2+ classes")
        row = eye[k] - (1.0 - eye[k]) / (c - 1)  # w_k minus the mean of the other rows
        return row.expand(b, 1, c).clone(), torch.full((b,), k, dtype=torch.long, device=device)
    elif isinstance(spec, str):  # "difference"
        if c != 2:
            raise ConfigError(f"class_idx='difference' needs a two-class network, this one has {c} classes")
        diff = (eye[1] - eye[0]).expand(b, 1, c).clone()
        return diff, torch.tensor([1, 0], device=device).expand(b, 2).clone()
    elif isinstance(spec, int) and not isinstance(spec, bool):
        targets = torch.full((b,), spec, dtype=torch.long, device=device)
    else:
        targets = torch.as_tensor(spec, device=device).long().reshape(-1)
        if targets.numel() != b:
            raise ConfigError(f"per-sample class_idx has {targets.numel()} entries for a batch of {b}")
    if targets.numel() and (targets.min() < 0 or targets.max() >= c):
        raise ConfigError(f"class_idx {targets.tolist()} out of range for {c} classes")
    return eye[targets].unsqueeze(1), targets


class _inference_state:
    """Eval mode (and, for gradient methods, frozen parameters) inside; the exact old state after.

    Only what differs is touched: the modules in training mode, the parameters that require grad
    (an eval-mode network costs nothing here). Nothing here writes ``.grad``.
    """

    def __init__(self, network: nn.Module, freeze: bool) -> None:
        self.network = network
        self.freeze = freeze

    def __enter__(self) -> None:
        self.training = [m for m in self.network.modules() if m.training]
        self.frozen = [p for p in self.network.parameters() if p.requires_grad] if self.freeze else []
        for m in self.training:
            m.training = False
        for p in self.frozen:
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        for m in self.training:
            m.training = True
        for p in self.frozen:
            p.requires_grad_(True)
