"""The device-resident training pipeline, kept under its former name: the code is in
:mod:`hcp_cam.training.device` (``cache``, ``augmentation``, ``loader``); the bundle configs still name
``hcp_cam.training.device_pipeline.<name>``."""

from hcp_cam.training import device as _device
from hcp_cam.training.device import *  # noqa: F403

__all__ = list(_device.__all__)
