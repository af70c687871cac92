"""MONAI array and dictionary transforms of hcp-cam (installed as ``hcp_cam.transforms``).

Two layers, as in MONAI (functional -> array -> dictionary):

- functional modules that import torch, numpy and nibabel only: :mod:`.gradients` (FSL gradient
  tables), :mod:`.dwi_io` (read a DWI with its gradients and mask), :mod:`.tensor_torch` (the
  batched WLS tensor fit), :mod:`.tensor_maps` (FA, MD, ... of a whole DWI);
- MONAI transforms over them: :mod:`.dwi` (``LoadDWI``/``LoadDWId``), :mod:`.tensor_fit`
  (``DTIFit``/``DTIFitd``), and the 2.5D slicing and augmentation chains.

The names below are imported on first use (PEP 562), so that importing a functional module, as
``hcp-cam fa`` does, loads no MONAI module.
"""

from __future__ import annotations

from hcp_cam.lazy import lazy_exports

# public name -> the submodule that defines it
_LAZY = {
    "DERIVED_MASK_KEY": "augment",
    "build_slice_transforms": "augment",
    "map_to_slice": "augment",
    "build_volume_transforms": "augment",
    "PreprocessingParams": "preprocessing",
    "LoadDWI": "dwi",
    "LoadDWId": "dwi",
    "find_gradient_files": "dwi_io",
    "DWIVolume": "dwi_io",
    "read_dwi": "dwi_io",
    "read_mask": "dwi_io",
    "GradientTable": "gradients",
    "make_gradient_table": "gradients",
    "read_gradients": "gradients",
    "BatchedSliceEval": "slice_batch",
    "SliceEvalCompose": "slice_batch",
    "SliceGeometry": "slice_batch",
    "slice_stack": "slice_batch",
    "SELECTIONS": "slicing",
    "Slices25D": "slicing",
    "Slices25Dd": "slicing",
    "slice_affine": "slicing",
    "slice_indices": "slicing",
    "stack_slices": "slicing",
    "trained_slices": "slicing",
    "DTIFit": "tensor_fit",
    "DTIFitd": "tensor_fit",
    "TENSOR_METRICS": "tensor_maps",
    "fit_dti_maps": "tensor_maps",
    "fit_tensor_dipy": "tensor_maps",
    "tensor_metrics": "tensor_maps",
    "fit_tensor_torch": "tensor_torch",
    "fractional_anisotropy": "tensor_torch",
}

__all__ = [
    "GradientTable",
    "read_gradients",
    "make_gradient_table",
    "DWIVolume",
    "read_dwi",
    "read_mask",
    "LoadDWI",
    "LoadDWId",
    "find_gradient_files",
    "DTIFit",
    "DTIFitd",
    "TENSOR_METRICS",
    "tensor_metrics",
    "fit_dti_maps",
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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
