"""Synthetic HCP-like diffusion data with a known ground truth (true FA, age-effect region).

``generate_dataset`` writes subjects in HCP's layouts; ``make_subject`` and ``make_dwi`` give the
same data in memory (benchmarks, tests). Everything is reproducible from its seed.
"""

from hcp_cam.synth.dataset import (
    AGE_BANDS,
    LAYOUTS,
    MANIFEST,
    SynthAcquisition,
    SynthDataset,
    draw_participants,
    generate_dataset,
)
from hcp_cam.synth.ground_truth import ATLAS_LABELS, atlas_of
from hcp_cam.synth.nifti_out import write_dwi_nifti
from hcp_cam.synth.phantom import (
    DEFAULT_ROI_CENTER,
    DEFAULT_ROI_RADIUS,
    TISSUE_PARAMS,
    Phantom,
    fa_from_diffusivities,
    make_affine,
    make_phantom,
)
from hcp_cam.synth.signal import (
    S0_WHITE_MATTER,
    GradientScheme,
    add_rician_noise,
    dwi_volume,
    hemisphere_directions,
    iter_dwi_volumes,
    make_gradient_scheme,
)
from hcp_cam.synth.subject import (
    DEFAULT_SHAPE,
    DEFAULT_VOXEL_SIZE,
    MAX_ROTATION_DEG,
    MAX_SHIFT_MM,
    SynthDWI,
    SynthSubject,
    draw_misalignment,
    make_dwi,
    make_subject,
)

__all__ = [
    "AGE_BANDS",
    "ATLAS_LABELS",
    "DEFAULT_ROI_CENTER",
    "DEFAULT_ROI_RADIUS",
    "DEFAULT_SHAPE",
    "DEFAULT_VOXEL_SIZE",
    "LAYOUTS",
    "MANIFEST",
    "MAX_ROTATION_DEG",
    "MAX_SHIFT_MM",
    "S0_WHITE_MATTER",
    "TISSUE_PARAMS",
    "GradientScheme",
    "Phantom",
    "SynthAcquisition",
    "SynthDWI",
    "SynthDataset",
    "SynthSubject",
    "add_rician_noise",
    "atlas_of",
    "draw_misalignment",
    "draw_participants",
    "dwi_volume",
    "fa_from_diffusivities",
    "generate_dataset",
    "hemisphere_directions",
    "iter_dwi_volumes",
    "make_affine",
    "make_dwi",
    "make_gradient_scheme",
    "make_phantom",
    "make_subject",
    "write_dwi_nifti",
]
