"""CAM of one FA map (or one DWI) with a trained network: what ``hcp-cam cam`` runs.

The network is rebuilt from the training run's ``config.json`` (``arch``, ``spatial_dims``,
``image_size``, ``network_width``, ...) and its weights are checked against it before anything is
read or written; the class names come from the run's ``datalist.json``. Every input is checked
before the first output is written (a 3D input must look like FA:
:func:`hcp_cam.data.fa_checks.check_fa_values`), and the outputs are written in a hidden folder
and renamed together at the end (:func:`hcp_cam.output_sets.staged_outputs`): a run that fails
leaves the outputs of an earlier run under the same prefix as they were, a first run nothing.
The CAM itself is :func:`hcp_cam.cam.pipeline.cam_for_volume`, the same code the bundle's
``inference`` runs.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from hcp_cam.data.fa_checks import check_fa_values
from hcp_cam.errors import ConfigError, InputError
from hcp_cam.fa_volume import load_fa_with_mask
from hcp_cam.io import load_nifti, write_json_atomic
from hcp_cam.output_sets import check_outputs, staged_outputs

__all__ = [
    "DEFAULT_LABELS",
    "OUTPUT_SUFFIXES",
    "load_run_config",
    "load_labels",
    "load_trained_network",
    "output_paths",
    "cam_single",
    "summary_line",
]

logger = logging.getLogger(__name__)

#: class names used when the run folder has no ``datalist.json`` (label 0 = young, 1 = old)
DEFAULT_LABELS = ("young", "old")
#: what ``cam_single`` writes after ``PREFIX`` (``_fa`` only for a DWI input)
OUTPUT_SUFFIXES = ("_fa.nii.gz", "_cam.nii.gz", "_cam01.nii.gz", "_bbox.json", "_overlay.png")
_REQUIRED_KEYS = ("arch", "image_size", "network_width")
PathLike = str | os.PathLike


def load_run_config(checkpoint: PathLike, config: PathLike | None = None) -> tuple[dict[str, Any], Path]:
    """The training run's configuration: ``config`` or ``<checkpoint>/../../config.json``.

    Args:
        checkpoint: weights file, e.g. ``RUN/checkpoints/model.pt``.
        config: explicit ``config.json`` of the run (overrides the one found beside the checkpoint).

    Returns:
        ``(settings, config_path)``; ``settings`` holds at least ``arch``, ``image_size`` and
        ``network_width``.

    Raises:
        ConfigError: the file is missing, is not a JSON object, or lacks a required key.
    """
    path = Path(config) if config is not None else Path(checkpoint).parent.parent / "config.json"
    if not path.is_file():
        hint = "" if config is not None else " (the checkpoint is not inside a run folder: pass --config)"
        raise ConfigError(f"run configuration {path} does not exist{hint}")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"run configuration {path} is not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"run configuration {path} holds a {type(cfg).__name__}, not a JSON object")
    missing = [k for k in _REQUIRED_KEYS if cfg.get(k) is None]
    if missing:
        raise ConfigError(f"run configuration {path} lacks {missing}; it needs {list(_REQUIRED_KEYS)}")
    _check_run_values(cfg, path)
    return cfg, path


def _whole(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()


# key -> (is the value acceptable, what is expected); absent optional keys take their defaults
_RUN_VALUES: dict[str, tuple[Any, str]] = {
    "arch": (lambda v: isinstance(v, str) and v.strip() != "", "a network name"),
    "image_size": (lambda v: _whole(v) and v >= 1, "a whole number of voxels >= 1"),
    "network_width": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf"),
        "a width multiplier > 0",
    ),
    "spatial_dims": (lambda v: _whole(v) and v in (2, 3), "2 (slices) or 3 (volumes)"),
    "slices_per_axis": (lambda v: _whole(v) and v >= 1, "a whole number of slices >= 1"),
    "num_classes": (lambda v: v is None or (_whole(v) and v >= 2), "a whole number >= 2"),
}


def _check_run_values(cfg: Mapping[str, Any], path: Path) -> None:
    """Refuse a run configuration value that would fail deep inside MONAI, naming the key."""
    for key, (ok, expected) in _RUN_VALUES.items():
        if key in cfg and not ok(cfg[key]):
            raise ConfigError(
                f"run configuration {path}: {key} must be {expected}, got {cfg[key]!r}; "
                "fix the key or pass the run's own config.json with --config"
            )


def load_labels(run_dir: PathLike, num_classes: int | None = None) -> list[str]:
    """Class names in label order from ``run_dir/datalist.json``; :data:`DEFAULT_LABELS` without it.

    Raises:
        ConfigError: the datalist is unreadable, or its class count differs from ``num_classes``.
    """
    path = Path(run_dir) / "datalist.json"
    if path.is_file():
        try:
            labels = json.loads(path.read_text()).get("labels")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ConfigError(f"{path}: cannot read the class names ({e})") from e
        if not isinstance(labels, list) or not labels:
            raise ConfigError(f"{path}: no 'labels' list (the class names in label order)")
        labels = [str(x) for x in labels]
    else:
        labels = list(DEFAULT_LABELS)
        logger.info("no %s: assuming the classes %s (label 0, 1)", path, labels)
    if num_classes is not None and len(labels) != int(num_classes):
        raise ConfigError(f"the run has num_classes={num_classes} but the classes {labels} ({path})")
    return labels


def _target_scale(run_dir: PathLike) -> Any:
    """A regression run's target scale (``target_scale`` of its ``datalist.json``), for ages in years."""
    from hcp_cam.training.tasks import TargetScale

    path = Path(run_dir) / "datalist.json"
    try:
        return TargetScale(**json.loads(path.read_text())["target_scale"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"{path}: a regression run needs its target_scale (mean and SD of the ages) ({e})"
        ) from e


def load_trained_network(
    checkpoint: PathLike, cfg: Mapping[str, Any], device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Build the network of ``cfg`` with :func:`hcp_cam.networks.get_network` and load ``checkpoint``.

    Accepts a plain state dict (``model.pt``) or a training checkpoint holding it under ``"model"``
    (``checkpoint_epoch=N.pt``).

    Returns:
        the network in eval mode on ``device``.

    Raises:
        ConfigError: the file is not a checkpoint, or its weights are for another architecture,
            width or class count (:func:`~hcp_cam.training.checkpoints.check_model_checkpoint`).
    """
    from hcp_cam.networks import get_network
    from hcp_cam.training.checkpoints import check_model_checkpoint, load_checkpoint

    network = get_network(
        cfg["arch"],
        spatial_dims=int(cfg.get("spatial_dims", 2)),
        num_classes=int(cfg.get("num_classes") or 2),
        width=float(cfg["network_width"]),
        batch_norm=cfg.get("batch_norm"),
    )
    check_model_checkpoint(checkpoint, network)
    state = load_checkpoint(checkpoint)
    if isinstance(state.get("model"), Mapping):
        state = state["model"]
    network.load_state_dict(state)
    return network.to(device).eval()


def output_paths(prefix: PathLike) -> dict[str, Path]:
    """``{suffix: PREFIX<suffix>}`` for every file :func:`cam_single` may write."""
    return {s: Path(f"{os.fspath(prefix)}{s}") for s in OUTPUT_SUFFIXES}


def _dry_run(
    inferer: Any, network: torch.nn.Module, spatial_dims: int, size: int, device: torch.device, class_idx: Any
) -> None:
    """One blank input through the inferer, so that a wrong ``--layer`` or class fails here, before
    a tensor fit or any write, not after."""
    blank = torch.zeros((1, 1, *[size] * spatial_dims), device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-zero map is expected of a blank input
        if class_idx is None:
            inferer(blank, network)
        else:
            inferer(blank, network, class_idx=class_idx)


def _stale_outputs(prefix: PathLike, written: Mapping[str, Path], inputs: Sequence[Path]) -> list[Path]:
    """Files under ``prefix`` of an earlier run that this one does not write (e.g. ``_overlay.png``
    after ``--no-figure``), inputs of this run excepted: removed when this run succeeds."""
    keep = {p.resolve() for p in inputs}
    return [
        p
        for s, p in output_paths(prefix).items()
        if s not in written and p.is_file() and p.resolve() not in keep
    ]


def _header_shape(path: PathLike, what: str) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine from the header only (no decoding), with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel raises ImageFileError, OSError, ValueError...
        raise InputError(f"cannot read the {what} as NIfTI ({type(e).__name__}: {e})", path) from e
    return tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=float)


def _check_same_grid(
    path: PathLike, what: str, shape: Sequence[int], affine: np.ndarray, ref: PathLike
) -> np.ndarray:
    """Load a 3D image and check it lies on ``(shape, affine)``; returns its data."""
    img = load_nifti(path, ndim=3)
    if tuple(img.shape) != tuple(shape[:3]):
        raise InputError(
            f"{what} grid {tuple(img.shape)} differs from the grid {tuple(shape[:3])} of {ref}", path
        )
    if not np.allclose(img.affine, affine, atol=1e-3):
        raise InputError(f"{what} affine differs from the affine of {ref} (not the same voxel grid)", path)
    return np.asarray(img.dataobj)


def cam_single(
    input_path: PathLike,
    checkpoint: PathLike,
    out_prefix: PathLike,
    config: PathLike | None = None,
    bvals: PathLike | None = None,
    bvecs: PathLike | None = None,
    mask: PathLike | None = None,
    cam_class: str | int | None = "predicted",
    method: str = "cam",
    layer: str | None = None,
    slices: str = "trained",
    threshold: float = 0.2,
    roi: PathLike | None = None,
    device: str | torch.device | None = None,
    figure: bool = True,
    coverage: str = "all",
) -> dict[str, Any]:
    """CAM of one FA map (3D) or DWI (4D, fitted to FA first) with a trained network.

    Args:
        input_path: FA map ``(X, Y, Z)`` or DWI ``(X, Y, Z, N)`` ``.nii``/``.nii.gz``.
        checkpoint: ``model.pt`` (state dict) or ``checkpoint_epoch=N.pt`` of a training run.
        out_prefix: outputs are ``PREFIX_cam.nii.gz`` (raw), ``PREFIX_cam01.nii.gz`` ([0, 1] per
            volume), ``PREFIX_bbox.json``, ``PREFIX_overlay.png`` and, for a DWI, ``PREFIX_fa.nii.gz``.
        config: the run's ``config.json`` (default: ``<checkpoint>/../../config.json``).
        bvals, bvecs: FSL gradient files of a DWI (default: found beside it).
        mask: 3D brain mask on the input's grid (default: nonzero FA).
        cam_class: class name, index, ``"predicted"`` or ``"difference"`` (two classes only).
        method: ``"cam"``, ``"gradcam"`` or ``"gradcampp"``. layer: target layer (gradient methods).
        slices: ``"trained"`` (only the slices the network was trained on; the rest stay 0,
            unknown) or ``"all"`` (every slice with brain). Ignored for 3D networks.
        threshold: box threshold, a fraction of the CAM maximum (0.2 = 20%).
        roi: ground-truth region on the FA grid; adds localization scores to the JSON.
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
        figure: write the overlay PNG.
        coverage: ``"all"`` (fused map where every axis covers a voxel) or ``"any"``; see
            :func:`~hcp_cam.cam.volume.cam_volume`.

    Returns:
        the ``_bbox.json`` content plus ``outputs`` (suffix -> path written).

    Raises:
        InputError: missing, unreadable or 5D input; a 3D input that is not FA (values outside
            [0, 1], NaN, a binary mask); mask or ROI on another grid; empty mask; an output folder
            that cannot be written.
        ConfigError: run configuration (a missing or invalid key), checkpoint, class or method
            that do not fit.
    """
    from hcp_cam.cam.inferer import CAMInferer, has_cam_head
    from hcp_cam.cam.pipeline import CAM_SLICES, cam_for_volume, resolve_cam_class
    from hcp_cam.cam.volume import COVERAGE_MODES
    from hcp_cam.training.data import build_transforms
    from hcp_cam.training.run_setup import resolve_device

    if slices not in CAM_SLICES:
        raise ConfigError(f"slices must be one of {CAM_SLICES}, got {slices!r}")
    if coverage not in COVERAGE_MODES:
        raise ConfigError(f"coverage must be one of {COVERAGE_MODES}, got {coverage!r}")
    if not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"threshold must be a fraction of the maximum in (0, 1], got {threshold}")
    # the network and its weights first: a wrong checkpoint costs no tensor fit
    cfg, cfg_path = load_run_config(checkpoint, config)
    regression = cfg.get("task") == "regression"  # one output, the age: num_classes is unused
    labels = load_labels(cfg_path.parent, None if regression else cfg.get("num_classes"))
    cfg = {**cfg, "num_classes": len(labels)}
    target = _target_scale(cfg_path.parent) if regression else None
    class_idx = resolve_cam_class(cam_class, labels)
    inferer = CAMInferer(method=method, target_layer=layer)
    dev = resolve_device(device)
    network = load_trained_network(checkpoint, cfg, dev)
    if method == "cam" and not has_cam_head(network):  # the inferer would say so too, but after the fit
        raise ConfigError(
            f"method 'cam' needs a global-pooling head (features, pool, classifier: nn.Linear); "
            f"{type(network).__name__} has none: use --method gradcam with --layer"
        )
    spatial_dims = int(cfg.get("spatial_dims", 2))
    minimum = int(getattr(network, "min_input_size", 1))
    if int(cfg["image_size"]) < minimum:
        raise ConfigError(
            f"run configuration {cfg_path}: image_size {cfg['image_size']} is below the {minimum} voxels "
            f"{cfg['arch']} needs; fix the key or pass the run's own config.json with --config"
        )
    _, eval_transform = build_transforms(spatial_dims=spatial_dims, image_size=int(cfg["image_size"]))
    _dry_run(inferer, network, spatial_dims, int(cfg["image_size"]), dev, class_idx)

    # then every input, before the first write
    shape, affine = _header_shape(input_path, "input image")
    if len(shape) not in (3, 4):
        raise InputError(
            f"expected an FA map (3D) or a DWI (4D), got a {len(shape)}D image of shape {shape}", input_path
        )
    is_dwi = len(shape) == 4
    paths = output_paths(out_prefix)
    if not is_dwi:
        paths.pop("_fa.nii.gz")
    if not figure:
        paths.pop("_overlay.png")
    if Path(input_path).resolve() in {p.resolve() for p in paths.values()}:
        raise InputError("an output would overwrite the input; choose another --out prefix", input_path)
    if mask is not None and is_dwi:  # on the DWI's grid, before the fit
        if not (_check_same_grid(mask, "mask", shape, affine, input_path) > 0).any():
            raise InputError("the brain mask is empty (no nonzero voxel)", mask)
    if roi is not None:
        _check_same_grid(roi, "ROI", shape, affine, input_path)
    fa_path = Path(input_path)
    if not is_dwi:
        # the one loader checks the mask's grid and that there is a brain; then a b0 or a mask given as
        # FA, which would get a confident answer, is refused
        vol = load_fa_with_mask(fa_path, mask)
        checked = check_fa_values(
            vol.fa, fa_path, vol.mask if mask is not None else None, what="input FA map"
        )
        for line in checked.warnings:
            logger.warning("%s", line)

    check_outputs(paths.values())
    inputs = [input_path, mask, roi, bvals, bvecs, checkpoint, cfg_path]
    stale = _stale_outputs(out_prefix, paths, [Path(p) for p in inputs if p is not None])
    # every output is written under a temporary name and all are renamed at the end: a run that
    # fails leaves an earlier run's outputs under this prefix as they were, never a mix
    with staged_outputs(paths, stale) as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tmp_prefix = tmp["_cam.nii.gz"].parent / Path(out_prefix).name  # the writers add the suffixes
        if is_dwi:
            from hcp_cam.fa_maps import compute_fa_file

            fa_path = paths["_fa.nii.gz"]
            logger.info("fitting the tensor to %s -> %s", input_path, fa_path)
            compute_fa_file(input_path, bvals, bvecs, mask, tmp["_fa.nii.gz"], device=dev)
        trained = None
        if slices == "trained":
            trained = (cfg.get("slice_selection", "centre"), int(cfg.get("slices_per_axis", 16)))
        prefix = Path(out_prefix)
        row = cam_for_volume(
            tmp["_fa.nii.gz"] if is_dwi else fa_path, mask, network, inferer, eval_transform, tmp_prefix, labels,
            class_idx=class_idx, trained_selection=trained, fraction=float(threshold), roi_path=roi, figure=figure,
            coverage=coverage, title=f"{prefix.parent.name} {prefix.name}", target=target,
        )  # fmt: skip
        row.update(
            fa=str(fa_path), input=str(input_path), checkpoint=str(checkpoint), config=str(cfg_path), method=method,
            layer=layer, slices=slices if spatial_dims == 2 else "volume",
        )  # fmt: skip
        write_json_atomic(row, tmp["_bbox.json"])
    # library warnings (all-zero map, empty box) as one log line each, not a Python warning dump
    for w in {str(w.message) for w in caught if issubclass(w.category, UserWarning)}:
        logger.warning("%s", w)
    return {**row, "outputs": {s: str(p) for s, p in paths.items()}}


def summary_line(row: Mapping[str, Any]) -> str:
    """One line: predicted class and probability, the CAM's class, peak and box in mm."""
    if "predicted_age" in row:  # a regressor
        head = f"predicted age {row['predicted_age']:.1f} y"
    else:
        pred = row["predicted"]
        head = f"predicted {pred} (p={row.get(f'prob_{pred}', float('nan')):.3f})"
    peak = ", ".join(f"{v:.1f}" for v in row["peak_mm"])
    if row["box"]["empty"]:
        box = "box empty (the CAM has no positive value)"
    else:
        lo = ", ".join(f"{v:.1f}" for v in row["box_min_mm"])
        hi = ", ".join(f"{v:.1f}" for v in row["box_max_mm"])
        box = f"box ({lo}) to ({hi}) mm at {row['threshold_fraction']:.0%} of max"
    return (
        f"{row['input']}: {head}; CAM of {row['cam_class']} ({row['method']}); "
        f"peak ({peak}) mm; {box}; -> {row['outputs']['_cam.nii.gz']}"
    )
