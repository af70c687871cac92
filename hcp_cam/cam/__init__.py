"""Class Activation Maps: the inferer, boxes and localization scores."""

from hcp_cam.cam.inferer import METHODS, CAMInferer, CAMOutput, has_cam_head, upsample_maps

__all__ = ["METHODS", "CAMInferer", "CAMOutput", "has_cam_head", "upsample_maps"]
