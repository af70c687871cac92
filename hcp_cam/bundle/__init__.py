"""What the bundle configs (``bundles/cam_dmri/configs``) call besides the library: the workflow
running them (bundle folder, command-line keys) and how a run reports bad input."""

from hcp_cam.bundle.errors import report_errors, user_error
from hcp_cam.bundle.workflow import bundle_root, check_override_keys, current_workflow, override_keys

__all__ = [
    "bundle_root",
    "check_override_keys",
    "current_workflow",
    "override_keys",
    "report_errors",
    "user_error",
]
