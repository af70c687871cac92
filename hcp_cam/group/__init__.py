"""Group-level maps in a common space: registration (SimpleITK), group CAM and FA maps with
permutation tests, atlas tables, quality control.

``run_group_analysis(run_dirs, out_dir, ...)`` is what ``hcp-cam group`` and the bundle's
``group_analysis`` step run; the modules hold its parts: ``runs`` (the cohort from bundle run
folders), ``template``, ``registration``, ``warping``, ``cam_scale`` (each subject's CAM z-scored, or
raw, before the tests), ``permutation``, ``atlas``, ``tables``, ``outputs`` (the maps and tables of
one call, all or none), ``figures``, ``subject_space``
(template-space maps back to a subject's grid) and ``bundle`` (the bundle's step).
"""

from hcp_cam.group.analysis import GroupResult, array_digest, check_inputs, parse_shard, run_group_analysis
from hcp_cam.group.atlas import Atlas, load_atlas, read_label_table
from hcp_cam.group.bundle import bundle_step, check_bundle_step
from hcp_cam.group.cam_scale import CAM_SCALES, scale_cam
from hcp_cam.group.images import array_from_sitk, to_sitk
from hcp_cam.group.permutation import PermutationResult, permutation_test
from hcp_cam.group.registration import Registration, RegistrationSettings, register
from hcp_cam.group.runs import Cohort, SubjectMaps, collect_cohort
from hcp_cam.group.subject_space import to_subject
from hcp_cam.group.template import build_template, load_template
from hcp_cam.group.warping import inverse_transform, known_cam_voxels, resample

__all__ = [
    "Atlas",
    "CAM_SCALES",
    "Cohort",
    "GroupResult",
    "PermutationResult",
    "Registration",
    "RegistrationSettings",
    "SubjectMaps",
    "array_digest",
    "array_from_sitk",
    "build_template",
    "check_inputs",
    "bundle_step",
    "check_bundle_step",
    "collect_cohort",
    "inverse_transform",
    "known_cam_voxels",
    "load_atlas",
    "load_template",
    "parse_shard",
    "permutation_test",
    "read_label_table",
    "register",
    "resample",
    "run_group_analysis",
    "scale_cam",
    "to_sitk",
    "to_subject",
]
