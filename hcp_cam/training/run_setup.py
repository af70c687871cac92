"""What a bundle run settles before it builds anything: where the bundle is, the device, the run folder.

The bundle configs call these through ``$hcp_cam.training.run_setup...`` expressions; the logic
lives here so that the JSON holds wiring only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hcp_cam.errors import ConfigError
from hcp_cam.io import write_json_atomic

__all__ = [
    "default_output_dir",
    "default_cache_dir",
    "is_main_rank",
    "on_main_rank",
    "init_distributed",
    "destroy_distributed",
    "resolve_device",
    "resolve_data_pipeline",
    "resolve_amp",
    "resolve_channels_last",
    "place_network",
    "prepare_output_dir",
    "record_run_config",
    "check_image_size",
    "flag",
    "optional",
    "RUN_CONFIG_KEYS",
]

logger = logging.getLogger(__name__)

# the settings that make two runs "the same configuration": a run folder that holds a run with
# other values of these is refused unless `resume` is asked for or a new folder is given
RUN_CONFIG_KEYS = (
    "arch",
    "spatial_dims",
    "slices_per_axis",
    "slice_selection",
    "image_size",
    "network_width",
    "batch_norm",
    "num_classes",
    "groups",
    "val_fraction",
    "test_fraction",
    "fold",
    "num_folds",
    "seed",
    "dataset_dir",
    "label_permutation_seed",
    "task",
    "demo_age_effect",
)
# what a run folder recorded before a key existed is that key's default (a run from before `task`
# was a classification run, and may be resumed as one)
_RUN_CONFIG_DEFAULTS = {"task": "classification", "demo_age_effect": "groups"}


def default_output_dir(
    bundle_root: str | os.PathLike,
    arch: str,
    num_folds: Any = 1,
    fold: Any = 0,
    base: str | os.PathLike | None = None,
) -> str:
    """``<base>/runs/<arch>``, with ``_fold<k>`` when the run is one fold of a k-fold split.

    ``base`` is the current working directory by default: the outputs of a run land where it is
    started, as for any command, and never inside the bundle folder, which may be read-only or
    shared (a copy of the model zoo's bundle, a package's data).

    Args:
        bundle_root: the bundle folder (:func:`hcp_cam.bundle.bundle_root`).
        arch: the network's name.
        num_folds, fold: the k-fold setting (``num_folds <= 1``: a hold-out run).
        base: where ``runs/`` goes; ``None``: the current working directory.

    Returns:
        an absolute path.

    Raises:
        ConfigError: the folder would lie inside ``bundle_root`` (the run was started from inside the
            bundle): pass ``--output_dir`` or start it elsewhere.
    """
    name = str(arch) if int(num_folds or 1) <= 1 else f"{arch}_fold{int(fold or 0)}"
    out = Path(
        os.path.abspath(os.path.join(os.fspath(base if base is not None else os.getcwd()), "runs", name))
    )
    bundle = Path(os.path.abspath(os.fspath(bundle_root)))
    if out == bundle or bundle in out.parents:
        raise ConfigError(
            f"the default output_dir {out} would lie inside the bundle folder {bundle}; run the command from "
            "another folder or pass --output_dir"
        )
    return str(out)


def default_cache_dir() -> str:
    """The per-user cache, ``$XDG_CACHE_HOME/hcp-cam`` or ``~/.cache/hcp-cam`` (not created here):
    FA maps, computed brain masks, pybids' index and the demo data (:mod:`hcp_cam.data.cache`)."""
    from hcp_cam.data.cache import user_cache_dir

    return str(user_cache_dir())


def is_main_rank() -> bool:
    """True outside ``torch.distributed`` and on rank 0: the process that writes logs and files."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def on_main_rank(items: Any) -> Any:
    """``items`` (e.g. a list of handlers) on the main rank, an empty list on the other ranks."""
    return items if is_main_rank() else []


def init_distributed(device: str | torch.device) -> bool:
    """Join the ``torchrun`` process group (NCCL on CUDA, gloo on a CPU) and pin this rank's GPU.

    Returns:
        ``True`` (a process group is initialised).
    """
    import torch.distributed as dist

    dev = torch.device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return True


def destroy_distributed() -> None:
    """Leave the process group at the end of a ``torchrun`` run."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> ``cuda`` when available, else ``cpu``; a CUDA device asked for on a
    machine without one is a :class:`ConfigError`."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use --device cpu")
    return dev


DATA_PIPELINES = ("monai", "device")


def _auto(value: Any) -> bool:
    return value is None or str(value).strip().lower() == "auto"


def resolve_data_pipeline(pipeline: str | None, device: str | torch.device, spatial_dims: int = 2) -> str:
    """The training data pipeline: ``"monai"`` (the per-slice MONAI chain in a ``DataLoader`` on the
    CPU) or ``"device"`` (slices cached on the device, batched augmentation there; see
    :mod:`hcp_cam.training.device`).

    Args:
        pipeline: ``"auto"``/``None`` (``"device"`` on CUDA for 2D slices, else ``"monai"``),
            ``"monai"`` or ``"device"``.
        device: the torch device of the run.
        spatial_dims: 2 (slices) or 3 (volumes: only ``"monai"``).

    Raises:
        ConfigError: an unknown name, or ``"device"`` with ``spatial_dims=3``.
    """
    dev = torch.device(device)
    if _auto(pipeline):
        name = "device" if dev.type == "cuda" and int(spatial_dims) == 2 else "monai"
    else:
        name = str(pipeline).strip().lower()
        if name not in DATA_PIPELINES:
            raise ConfigError(f"data_pipeline must be 'auto', 'monai' or 'device', got {pipeline!r}")
        if name == "device" and int(spatial_dims) != 2:
            raise ConfigError(
                "data_pipeline 'device' caches 2D slices; with spatial_dims 3 use 'monai' or 'auto'"
            )
    logger.info("data pipeline: %s (data_pipeline %r, device %s)", name, pipeline, dev)
    return name


def resolve_amp(amp: Any, device: str | torch.device) -> bool:
    """Mixed precision: ``"auto"`` is on for CUDA, off elsewhere; ``true``/``false`` as given, except that
    it is off (with a warning) on a device other than CUDA, where MONAI's engines only autocast CUDA.

    Raises:
        ConfigError: a value that is neither ``auto`` nor a boolean.
    """
    dev = torch.device(device)
    if _auto(amp):
        return dev.type == "cuda"
    on = bool(flag(amp, "amp"))
    if on and dev.type != "cuda":
        logger.warning(
            "amp is on but the device is %s: MONAI's engines autocast on CUDA only; amp is off", dev
        )
        return False
    return on


def resolve_channels_last(channels_last: Any, device: str | torch.device, spatial_dims: int = 2) -> bool:
    """``torch.channels_last`` memory format for a 2D network: ``"auto"`` is on for CUDA (cuDNN's
    NHWC convolutions under AMP), off elsewhere and for 3D networks.

    Raises:
        ConfigError: a value that is neither ``auto`` nor a boolean, or ``true`` with ``spatial_dims=3``.
    """
    if _auto(channels_last):
        return torch.device(device).type == "cuda" and int(spatial_dims) == 2
    on = bool(flag(channels_last, "channels_last"))
    if on and int(spatial_dims) != 2:
        raise ConfigError("channels_last applies to 2D networks; set it to false or auto with spatial_dims 3")
    return on


def place_network(
    network: torch.nn.Module, device: str | torch.device, channels_last: bool = False
) -> torch.nn.Module:
    """Move ``network`` to ``device``, in ``torch.channels_last`` memory format when asked.

    Weights keep their values; a state dict saved from a channels-last network loads into a
    contiguous one (``load_state_dict`` copies), so checkpoints do not depend on the format.
    """
    network = network.to(torch.device(device))
    return network.to(memory_format=torch.channels_last) if channels_last else network


def check_image_size(network: torch.nn.Module, image_size: int) -> torch.nn.Module:
    """Refuse an ``image_size`` the network cannot take, before the run writes any file.

    Without this check a too-small input fails only at the first forward pass, after the run
    folder, its ``config.json`` and ``datalist.json`` were written.

    Args:
        network: a :class:`hcp_cam.networks.CAMNetwork` (its ``min_input_size``, voxels).
        image_size: the slice side the transforms resize to (voxels).

    Returns:
        ``network``, unchanged.

    Raises:
        ConfigError: ``image_size`` is not a whole number >= 1, or is below the network's minimum;
            the message states it.
    """
    minimum = int(getattr(network, "min_input_size", 1))
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(
            f"image_size must be a whole number of voxels >= 1 (the side slices are resized to), got "
            f"{image_size!r}; use --image_size {minimum} or more"
        )
    if int(image_size) < minimum:
        arch = getattr(network, "arch", type(network).__name__)
        raise ConfigError(
            f"image_size {image_size} is too small for {arch}: the minimum is {minimum} voxels; "
            f"use --image_size {minimum} or more"
        )
    return network


def prepare_output_dir(
    output_dir: str | os.PathLike, settings: Mapping[str, Any], resume: bool = False, write: bool = True
) -> str:
    """Create the run folder and record its configuration in ``config.json``.

    A folder that already holds a run of a *different* configuration is refused unless
    ``resume`` is true (then the recorded configuration must match) or a new folder is given.
    With ``write=False`` the folder is only checked and created; the bundle records the
    configuration (:func:`record_run_config`) once the data are ready, so that a run stopped by
    bad input leaves no ``config.json`` that would block the corrected run.

    Returns:
        the run folder as a string (for use in config expressions).

    Raises:
        ConfigError: the folder holds a run of another configuration.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {k: _plain(settings[k]) for k in RUN_CONFIG_KEYS if k in settings}
    record.update({k: _plain(v) for k, v in settings.items() if k not in record})
    cfg_file = out / "config.json"
    if cfg_file.is_file():
        try:
            previous = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cfg_file}: unreadable run configuration ({e}); use a new output_dir") from e
        before, after = {**_RUN_CONFIG_DEFAULTS, **previous}, {**_RUN_CONFIG_DEFAULTS, **record}
        diff = {
            k: (before.get(k), after.get(k))
            for k in RUN_CONFIG_KEYS
            if k in before or k in after
            if before.get(k) != after.get(k)
        }
        if diff:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            hint = "the run cannot be resumed with other settings" if resume else "pass a new --output_dir"
            raise ConfigError(f"{out} holds a run of a different configuration ({what}); {hint}")
    if write:
        write_json_atomic(record, cfg_file)
    return str(out)


def record_run_config(output_dir: str | os.PathLike, settings: Mapping[str, Any]) -> str:
    """Write ``config.json`` of a run folder already checked by :func:`prepare_output_dir` (on the main
    rank only: under ``torch.distributed`` the other ranks write nothing)."""
    return prepare_output_dir(output_dir, settings, resume=True, write=is_main_rank())


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"null", "none", ""}


def flag(value: Any, name: str = "value", allow_none: bool = False) -> bool | None:
    """A boolean from a config or command-line value.

    ``python -m monai.bundle run ... --resume false`` passes the *string* ``"false"`` (fire only
    parses Python literals such as ``False``), which Python would take as true; this accepts
    ``true/false/yes/no/on/off/1/0`` in any case, and ``null``/``None`` when ``allow_none``.

    Raises:
        ConfigError: anything else.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if allow_none and text in _NONE:
        return None
    raise ConfigError(f"{name} must be true or false{' or null' if allow_none else ''}, got {value!r}")


def optional(value: Any) -> Any:
    """``None`` for ``null``/``None``/empty strings from the command line; the value otherwise."""
    if isinstance(value, str) and value.strip().lower() in _NONE:
        return None
    return value
