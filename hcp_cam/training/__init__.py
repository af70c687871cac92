"""What the bundle configs wire for training and evaluation: the data of a run, the run's set-up
(device, folders, distributed ranks), checkpoints, subject-level metrics and their handlers.

Submodules and names load on first use (PEP 562), so that ``hcp_cam.training.metrics`` (numpy only,
used by the reports and the command line) does not pull in MONAI and ignite.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = (
    "calibration",
    "checkpoints",
    "data",
    "device_pipeline",
    "handlers",
    "metrics",
    "regression",
    "regression_metrics",
    "run_setup",
    "selection",
    "tasks",
)
_NAMES = {
    "AtomicCheckpointSaver": "checkpoints",
    "attach_resume": "checkpoints",
    "best_model_path": "checkpoints",
    "check_model_checkpoint": "checkpoints",
    "latest_checkpoint": "checkpoints",
    "load_checkpoint": "checkpoints",
    "load_weights": "checkpoints",
    "PreparedData": "data",
    "build_transforms": "data",
    "prepare_data": "data",
    "prepare_output_dir": "run_setup",
    "resolve_device": "run_setup",
}

__all__ = [*_SUBMODULES, *_NAMES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
