"""What the bundle configs wire for training and evaluation: the data of a run, the run's set-up
(device, folders, distributed ranks), checkpoints, subject-level metrics and their handlers."""

from hcp_cam.training import checkpoints, data, device_pipeline, handlers, metrics, run_setup
from hcp_cam.training.checkpoints import (
    AtomicCheckpointSaver,
    attach_resume,
    best_model_path,
    check_model_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
)
from hcp_cam.training.data import PreparedData, build_transforms, prepare_data
from hcp_cam.training.run_setup import prepare_output_dir, resolve_device

__all__ = [
    "checkpoints",
    "data",
    "device_pipeline",
    "handlers",
    "metrics",
    "run_setup",
    "AtomicCheckpointSaver",
    "attach_resume",
    "best_model_path",
    "check_model_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights",
    "PreparedData",
    "build_transforms",
    "prepare_data",
    "prepare_output_dir",
    "resolve_device",
]
