"""MONAI array and dictionary transforms of hcp-cam (installed as ``hcp_cam.transforms``)."""

from hcp_cam.transforms.augment import (
    DERIVED_MASK_KEY,
    build_slice_transforms,
    build_volume_transforms,
    map_to_slice,
)
from hcp_cam.transforms.dwi import LoadDWI, LoadDWId, find_gradient_files
from hcp_cam.transforms.gradients import GradientTable, make_gradient_table, read_gradients
from hcp_cam.transforms.preprocessing import PreprocessingParams
from hcp_cam.transforms.slice_batch import BatchedSliceEval, SliceEvalCompose, SliceGeometry, slice_stack
from hcp_cam.transforms.slicing import (
    SELECTIONS,
    Slices25D,
    Slices25Dd,
    slice_affine,
    slice_indices,
    stack_slices,
    trained_slices,
)
from hcp_cam.transforms.tensor_fit import TENSOR_METRICS, DTIFit, DTIFitd, fit_tensor_dipy, tensor_metrics
from hcp_cam.transforms.tensor_torch import fit_tensor_torch, fractional_anisotropy

__all__ = [
    "GradientTable",
    "read_gradients",
    "make_gradient_table",
    "LoadDWI",
    "LoadDWId",
    "find_gradient_files",
    "DTIFit",
    "DTIFitd",
    "TENSOR_METRICS",
    "tensor_metrics",
    "fit_tensor_dipy",
    "fit_tensor_torch",
    "fractional_anisotropy",
    "DERIVED_MASK_KEY",
    "PreprocessingParams",
    "build_slice_transforms",
    "build_volume_transforms",
    "map_to_slice",
    "BatchedSliceEval",
    "SliceEvalCompose",
    "SliceGeometry",
    "slice_stack",
    "SELECTIONS",
    "Slices25D",
    "Slices25Dd",
    "slice_affine",
    "slice_indices",
    "trained_slices",
    "stack_slices",
]
