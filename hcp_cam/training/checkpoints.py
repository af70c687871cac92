"""Finding and checking checkpoints for ``resume`` and for evaluation/inference.

Training writes, under ``<output_dir>/checkpoints``:
- ``checkpoint_epoch=N.pt`` every epoch (model, optimizer, trainer, scheduler: what resume needs);
- ``model.pt``: the weights of the best epoch by the validation key metric (a plain state dict,
  the file MONAI's ``ckpt_export`` and the bundle's ``models/model.pt`` take).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.handlers import CheckpointSaver

from hcp_cam.errors import ConfigError

__all__ = [
    "AtomicCheckpointSaver",
    "latest_checkpoint",
    "load_checkpoint",
    "attach_resume",
    "attach_saver",
    "attach_early_stopping",
    "load_weights",
    "best_model_path",
    "check_model_checkpoint",
]

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"checkpoint_epoch=(\d+)\.pt$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)")


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose files are written under a temporary name, then renamed.

    MONAI turns ignite's atomic saving off (for file permissions, which ignite now sets itself),
    so a run killed while saving left a truncated ``checkpoint_epoch=N.pt`` and, with
    ``n_saved=1``, no other one: the run could not be resumed. Same arguments as
    :class:`monai.handlers.CheckpointSaver`; use ``n_saved >= 2`` so that the previous checkpoint
    (ignite removes the oldest before it writes the new one) survives a kill during a save.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:
                ckpt.save_handler._atomic = True


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The ``checkpoint_epoch=N.pt`` with the highest N in ``ckpt_dir``, or ``None``."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _EPOCH.search(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Mapping[str, Any]:
    """``torch.load(..., weights_only=True)`` with a one-line error for a file it cannot load.

    Only tensors and plain containers are loaded: unpickling arbitrary objects can run code, so a
    file that holds other Python objects is refused (and said so), not called corrupt. The file is
    never changed or removed.

    Raises:
        ConfigError: the file is missing, holds pickled objects that ``weights_only`` loading
            refuses (the message names the first one), is truncated or not a PyTorch file, or
            holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(_refused_message(path, e)) from e
    except Exception as e:  # a truncated or foreign file: RuntimeError, EOFError, KeyError, ...
        raise ConfigError(
            f"checkpoint {path} is truncated, corrupt or not a PyTorch file ({type(e).__name__}: "
            f"{_first_line(e)}); it was left as it is: resume from an earlier checkpoint_epoch=N.pt "
            "(move this one aside) or pass another file"
        ) from e
    if not isinstance(obj, Mapping):
        raise ConfigError(
            f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of tensors "
            "(a state dict, or a training checkpoint with a 'model' entry)"
        )
    return obj


def _refused_message(path: Path, error: Exception) -> str:
    """One line for a file that ``weights_only`` loading refuses: what it holds and what to do."""
    text = " ".join(_ANSI.sub("", str(error)).split())
    advice = (
        "it was left as it is: pass a file of tensors only (torch.save(network.state_dict(), path), "
        "as hcp-cam training writes), or re-save this one that way if you trust its source"
    )
    if found := _UNSAFE_GLOBAL.search(text):
        return (
            f"checkpoint {path} holds pickled Python objects ({found.group(1)}) besides tensors, which "
            f"safe loading (torch.load with weights_only=True) refuses because unpickling can run code; {advice}"
        )
    if found := _UNPICKLER_ERROR.search(text):
        return (
            f"checkpoint {path} is pickled in a form that safe loading (torch.load with weights_only=True) "
            f"refuses ({found.group(1).strip()}), e.g. a plain pickle, not torch.save output; {advice}"
        )
    return f"checkpoint {path} cannot be unpickled ({_first_line(error)}); {advice}"


def _first_line(error: Exception) -> str:
    """The first sentence of an exception's message, without terminal colour codes."""
    text = " ".join(_ANSI.sub("", str(error)).split())
    return text.split(". ")[0].rstrip(".") if text else type(error).__name__


def attach_resume(
    trainer: Any, ckpt_dir: str | os.PathLike, load_dict: Mapping[str, Any], resume: bool
) -> Path | None:
    """Attach a ``CheckpointLoader`` of the latest checkpoint to ``trainer`` when ``resume`` is true.

    The trainer then starts after the last completed epoch and runs to the same ``max_epochs``.
    The checkpoint is read once here, before any training starts, so a corrupt file stops the
    run with a clear message instead of being overwritten by the next epoch's save.

    Returns:
        the checkpoint resumed from, or ``None``.
    """
    if not resume:
        return None
    path = latest_checkpoint(ckpt_dir)
    if path is None:
        logger.info("resume: no checkpoint in %s, starting from epoch 1", ckpt_dir)
        return None
    load_checkpoint(path)
    from monai.handlers import CheckpointLoader

    logger.info("resume: continuing from %s", path)
    CheckpointLoader(load_path=str(path), load_dict=dict(load_dict), map_location="cpu").attach(trainer)
    return path


def attach_saver(saver: Any, trainer: Any) -> Any:
    """Attach a checkpoint saver to ``trainer`` on the main rank only (one writer per run folder)."""
    from hcp_cam.training.run_setup import is_main_rank

    if is_main_rank():
        saver.attach(trainer)
    return saver


def attach_early_stopping(evaluator: Any, trainer: Any, patience: int, metric: str = "val_accuracy") -> Any:
    """Stop ``trainer`` when the validation ``metric`` of ``evaluator`` (higher is better; accuracy by
    default, :func:`hcp_cam.training.selection.early_stop_metric` with another ``best_metric``) has not
    improved for ``patience`` epochs; ``patience`` 0 (the default) is off.

    Returns:
        the attached ``monai.handlers.EarlyStopHandler``, or ``None``.
    """
    patience = int(patience)
    if patience <= 0:
        return None
    from monai.handlers import EarlyStopHandler, stopping_fn_from_metric

    handler = EarlyStopHandler(
        patience=patience,
        score_function=stopping_fn_from_metric(metric),
        trainer=trainer,
        epoch_level=True,
    )
    handler.attach(evaluator)
    return handler


def load_weights(
    network: torch.nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> torch.nn.Module:
    """``network`` with the weights of the checkpoint at ``path`` (checked to fit it first), in eval mode."""
    check_model_checkpoint(path, network)
    state = load_checkpoint(path, map_location)
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    network.load_state_dict(state)
    return network.eval()


def best_model_path(output_dir: str | os.PathLike, ckpt: str | os.PathLike | None = None) -> str:
    """``ckpt`` if given, else ``<output_dir>/checkpoints/model.pt``; an error if it is missing."""
    if isinstance(ckpt, str) and ckpt.strip().lower() in ("", "null", "none"):
        ckpt = None
    path = Path(ckpt) if ckpt else Path(output_dir) / "checkpoints" / "model.pt"
    if not path.is_file():
        raise ConfigError(f"no trained model at {path}: run training first or pass --ckpt PATH")
    return str(path)


def check_model_checkpoint(path: str | os.PathLike, network: torch.nn.Module) -> str:
    """Check that ``path`` holds weights for ``network`` (same architecture and class count).

    Raises:
        ConfigError: the file is not a checkpoint, or its tensors do not fit the network, with the
            first mismatching names and shapes.
    """
    state = load_checkpoint(path)
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:3]))
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise ConfigError(
            f"checkpoint {path} does not fit the configured network (another arch, width or class count?): "
            + ", ".join(parts)
        )
    return str(path)
