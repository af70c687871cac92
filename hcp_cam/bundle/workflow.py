"""What a bundle config needs to know about the MONAI workflow that runs it.

``python -m monai.bundle run ... --config_file X`` passes the config nothing about itself: not the
folder ``X`` lies in, nor which keys came from the command line. MONAI's ``ConfigWorkflow`` knows
both (``config_root_path``, and the ``override`` pairs of :func:`monai.bundle.scripts.run`), so these
helpers find it on the call stack, where every config expression is evaluated, and use MONAI's own
rules: the bundle root is the config folder, or its parent when that folder is ``configs/`` (what
``ConfigWorkflow.run`` puts on ``sys.path``).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hcp_cam.errors import ConfigError

__all__ = ["current_workflow", "bundle_root", "override_keys", "check_override_keys", "RUN_ARGUMENTS"]

logger = logging.getLogger(__name__)

# keyword arguments of `monai.bundle run` itself: never config keys
RUN_ARGUMENTS = frozenset(
    {"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file"}
)


def _frames() -> Iterable[Any]:
    frame = inspect.currentframe()
    try:
        while frame is not None:
            yield frame
            frame = frame.f_back
    finally:
        del frame


def current_workflow() -> Any | None:
    """The ``monai.bundle.ConfigWorkflow`` evaluating the calling config expression, or ``None``
    (a config parsed directly with ``ConfigParser``, as ``ckpt_export`` and ``verify_net_in_out`` do)."""
    for frame in _frames():
        obj = frame.f_locals.get("self")
        if type(obj).__name__ == "ConfigWorkflow" and hasattr(obj, "config_root_path"):
            return obj
    return None


def bundle_root(default: str | os.PathLike | None = None) -> str:
    """The bundle folder, from the location of the config file being run.

    MONAI's rule (``ConfigWorkflow``): the folder of the first config file, or its parent when that
    folder is named ``configs``. So ``bundles/cam_dmri/configs/train.json`` and the top-level link
    ``bundles/cam_dmri/train.json`` both give ``bundles/cam_dmri``, from any working directory.

    Args:
        default: the answer when no workflow is running (e.g. ``ckpt_export``); else the current folder.

    Returns:
        an absolute path.
    """
    workflow = current_workflow()
    if workflow is not None:
        root = Path(workflow.config_root_path)
        if root.name == "configs":
            root = root.parent
        return os.path.abspath(root)
    return os.path.abspath(default if default is not None else os.curdir)


def override_keys() -> dict[str, Any] | None:
    """The ``--key value`` pairs given to ``monai.bundle run`` (its ``override``), with the config files
    it read; ``None`` when the config is not run by :func:`monai.bundle.scripts.run`."""
    for frame in _frames():
        code = frame.f_code
        if code.co_name == "run" and code.co_filename.endswith(os.path.join("monai", "bundle", "scripts.py")):
            local = frame.f_locals
            return {"override": dict(local.get("override") or {}), "config_file": local.get("config_file")}
    return None


def _declared_keys(config_file: Any) -> set[str]:
    from monai.bundle import ConfigParser

    content = ConfigParser.load_config_files(config_file)
    return {str(k).lstrip("+") for k in content}


def check_override_keys(known: Iterable[str] | None = None) -> None:
    """Refuse a command-line key that no config file declares, before anything runs.

    ``python -m monai.bundle run ... --image_sise 128`` adds a new key ``image_sise`` that nothing reads,
    and the run goes on with the default: a typo that changes nothing and says nothing. (A nested key
    such as ``--train#trainr#max_epochs 3`` MONAI refuses itself when it applies the override.)

    Args:
        known: keys accepted besides those of the config files (e.g. read by a user's own overlay).

    Raises:
        ConfigError: an unknown key, with the closest known one suggested.
    """
    found = override_keys()
    if found is None or not found["override"]:
        return
    declared = _declared_keys(found["config_file"]) | set(known or ()) | {"_meta_"}
    unknown = [
        k
        for k in found["override"]
        if k not in RUN_ARGUMENTS and str(k).split("#")[0].lstrip("+") not in declared
    ]
    if not unknown:
        return
    key = str(unknown[0]).split("#")[0].lstrip("+")
    close = difflib.get_close_matches(key, sorted(declared), n=1, cutoff=0.6)
    hint = f"did you mean --{close[0]}?" if close else "the keys are listed in the bundle's docs/README.md"
    more = f" (and {len(unknown) - 1} more: {', '.join(map(str, unknown[1:]))})" if len(unknown) > 1 else ""
    raise ConfigError(f"--{key} is not a key of this bundle{more}; {hint}")
