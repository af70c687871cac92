"""What the bundle configs wire for training and evaluation: the data of a run, the run's set-up
(device, folders, distributed ranks), checkpoints, subject-level metrics and their handlers.

Submodules and names load on first use (PEP 562), so that ``hcp_cam.training.metrics`` (numpy only,
used by the reports and the command line) does not pull in MONAI and ignite.
"""

from hcp_cam.lazy import lazy_exports

_SUBMODULES = (
    "batch_check",
    "calibration",
    "checkpoints",
    "data",
    "device",
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


__getattr__, __dir__ = lazy_exports(__name__, _NAMES, _SUBMODULES)
