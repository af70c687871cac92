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
from hcp_cam.cam.localization import (
    box_iou,
    box_iou_with_roi,
    dice,
    energy_pointing_game,
    iou,
    localization_scores,
    map_rank_correlation,
    pointing_game,
    randomization_check,
    scores_table,
    write_scores_csv,
    write_scores_markdown,
)
from hcp_cam.cam.nifti import normalise01, write_cam_nifti
from hcp_cam.cam.volume import FUSE_MODES, CAMVolume, cam_volume

__all__ = [
    "METHODS",
    "BoundingBox",
    "CAMInferer",
    "CAMOutput",
    "EmptyCAMWarning",
    "bounding_box",
    "box_iou",
    "box_iou_with_roi",
    "dice",
    "energy_pointing_game",
    "iou",
    "localization_scores",
    "map_rank_correlation",
    "pointing_game",
    "randomization_check",
    "scores_table",
    "write_scores_csv",
    "write_scores_markdown",
    "bounding_boxes",
    "box_of_mask",
    "box_to_world",
    "cam_segmentation",
    "has_cam_head",
    "upsample_maps",
    "FUSE_MODES",
    "CAMVolume",
    "cam_volume",
    "normalise01",
    "write_cam_nifti",
]
