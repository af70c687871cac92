"""The ground truth a synthetic dataset ships: the label atlas, each subject's true geometry, the README.

Written by :func:`hcp_cam.synth.dataset.generate_dataset` under ``derivatives/ground_truth/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hcp_cam.io import write_json_atomic
from hcp_cam.synth.phantom import CSF, GM, WM, Phantom
from hcp_cam.synth.subject import SynthSubject

__all__ = ["ATLAS_LABELS", "atlas_of", "write_transform", "readme_text"]

# the label atlas of the average brain (`atlas=True`): index -> name; "left"/"right" are the subject's
ATLAS_LABELS: dict[int, str] = {
    1: "effect_region",
    2: "corpus_callosum",
    3: "corticospinal_left",
    4: "corticospinal_right",
    5: "cingulum_left",
    6: "cingulum_right",
    7: "white_matter_left",
    8: "white_matter_right",
    9: "cortex_left",
    10: "cortex_right",
    11: "ventricles",
}


def atlas_of(phantom: Phantom, affine: np.ndarray) -> np.ndarray:
    """The label atlas of a phantom: ``(X, Y, Z)`` uint8 with the indices of :data:`ATLAS_LABELS`.

    The effect region wins over the tissue it lies in; sides follow the world x of each voxel
    (RAS: x > 0 is the subject's right).
    """
    shape = phantom.tissue.shape
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1).reshape(-1, 3)
    right = (idx @ affine[:3, :3].T + affine[:3, 3])[:, 0].reshape(shape) > 0
    tissue, tract = phantom.tissue, phantom.tract
    out = np.zeros(shape, dtype=np.uint8)
    named = {v: k for k, v in ATLAS_LABELS.items()}
    for side, sel in (("left", ~right), ("right", right)):
        out[(tissue == GM) & sel] = named[f"cortex_{side}"]
        out[(tissue == WM) & (tract == 0) & sel] = named[f"white_matter_{side}"]
        out[(tract == 2) & sel] = named[f"corticospinal_{side}"]
        out[(tract == 3) & sel] = named[f"cingulum_{side}"]
    out[tract == 1] = named["corpus_callosum"]
    out[tissue == CSF] = named["ventricles"]
    out[phantom.roi > 0] = named["effect_region"]
    return out


def write_transform(path: Path, subj: SynthSubject) -> Path:
    """The subject's true geometry: its head movement and the affine from the average brain."""
    moved = subj.misalignment if subj.misalignment is not None else np.eye(4)
    angle = float(np.degrees(np.arccos(np.clip((np.trace(moved[:3, :3]) - 1.0) / 2.0, -1.0, 1.0))))
    record = {
        "space": "world RAS mm, as nibabel reads the affine; matrices map points [x, y, z, 1]",
        "misalignment": {
            "matrix": moved.tolist(),
            "rotation_deg": angle,
            "shift_mm": moved[:3, 3].tolist(),
            "meaning": "a point x of the unmoved head lies at matrix @ x in this subject's images",
        },
        "template_to_subject": {
            "matrix": subj.template_to_subject.tolist(),
            "meaning": "a point x of template_fa.nii.gz / atlas.nii.gz (the average brain) lies at matrix @ x "
            "in this subject's images: the brain's shift and size, then the misalignment (the small "
            "non-affine shape differences are left out)",
        },
        "brain_shift_voxels": list(subj.phantom.shift),
        "brain_scale": subj.phantom.scale,
    }
    return write_json_atomic(record, path)


def readme_text(params: dict) -> str:
    """The ``README.txt`` of ``derivatives/ground_truth``: what each file holds, then ``params``."""
    text = """Synthetic HCP-like diffusion dataset written by `hcp-cam synth` (hcp_cam.synth).

<subject>_fa.nii.gz   true, noise-free fractional anisotropy (float32) on the DWI grid.
<subject>_roi.nii.gz  the age-effect region (uint8, 1 inside), written for every subject.
synth.json            parameters, seed, tissue diffusivities (mm^2/s), each subject's RD increase.

Old subjects have radial diffusivity times (1 + effect_size * a) in the region (a ~ N(1, 0.2)
clipped to [0.5, 1.5]), so their FA is lower there; young subjects have no effect. Tensors are
cylindrical (axial, radial, radial). bvecs follow FSL (image axes; x flipped only for a
positive-determinant affine). The same parameters and seed give identical files.
"""
    if params.get("age_effect") == "graded":
        text += (
            "\nGraded mode (age_effect = graded): ages spread over age_range, and every subject has the\n"
            "effect scaled by its place in that range, RD times (1 + effect_size * a * (age - low) / (high - low)):\n"
            "FA in the region falls steadily with age. participants.csv has no group column.\n"
        )
    text += "\nParameters:\n"
    extra = ""
    if params.get("misalign") or params.get("atlas"):
        extra = """
<subject>_transform.json  the true geometry of each subject (world RAS mm): "misalignment", the rigid
                      movement of the head inside its grid (with misalign on), and "template_to_subject",
                      the affine from the average brain to the subject (shift, size, then movement).
"""
    if params.get("atlas"):
        extra += """template_fa.nii.gz    noise-free FA of the average, unmoved brain (a reference FA template).
atlas.nii.gz          its labels (uint8); atlas_labels.csv the index,name table (effect_region = 1).
"""
    return text + "".join(f"  {k} = {v}\n" for k, v in params.items()) + extra
