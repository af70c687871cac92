"""The device-resident training pipeline, kept under its former name: the code is in
:mod:`hcp_cam.training.device` (``cache``, ``augmentation``, ``loader``); the bundle configs still name
``hcp_cam.training.device_pipeline.<name>``."""

from hcp_cam.training.device import (
    DeviceBatchLoader,
    RandSliceAugment,
    SetEpochHandler,
    SliceAugmentParams,
    SliceCache,
    crop_resize,
    epoch_seed,
    select_loader,
)

__all__ = [
    "SliceCache",
    "SliceAugmentParams",
    "RandSliceAugment",
    "crop_resize",
    "DeviceBatchLoader",
    "SetEpochHandler",
    "select_loader",
    "epoch_seed",
]
