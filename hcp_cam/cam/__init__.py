"""Class Activation Maps: the inferer, boxes and localization scores."""

from hcp_cam.cam.bbox import (
    BoundingBox,
    EmptyCAMWarning,
    bounding_box,
    bounding_boxes,
    box_of_mask,
    box_to_world,
    cam_segmentation,
)
from hcp_cam.cam.inferer import METHODS, CAMInferer, CAMOutput, has_cam_head, upsample_maps

__all__ = [
    "METHODS",
    "BoundingBox",
    "CAMInferer",
    "CAMOutput",
    "EmptyCAMWarning",
    "bounding_box",
    "bounding_boxes",
    "box_of_mask",
    "box_to_world",
    "cam_segmentation",
    "has_cam_head",
    "upsample_maps",
]
