"""Datasets: discovery of HCP, BIDS, QSIPrep and FA-map layouts, the participants table and its age
groups, subject-level splits and the MONAI datalist that ties them together (see docs/data.md)."""

from hcp_cam.data.cache import user_cache_dir
from hcp_cam.data.datalist import (
    PATH_KEYS,
    find_participants,
    load_datalist,
    make_datalist,
    split_summary,
    write_datalist,
)
from hcp_cam.data.discovery import LAYOUTS, Acquisition, discover_acquisitions
from hcp_cam.data.layouts import DATASET_LAYOUTS, find_acquisitions
from hcp_cam.data.participants import (
    DEFAULT_GROUPS,
    AgeGroups,
    match_participants,
    parse_age,
    parse_groups,
    read_participants,
)
from hcp_cam.data.splits import SPLITS, kfold_subjects, split_subjects

__all__ = [
    "Acquisition",
    "AgeGroups",
    "DATASET_LAYOUTS",
    "DEFAULT_GROUPS",
    "LAYOUTS",
    "PATH_KEYS",
    "SPLITS",
    "discover_acquisitions",
    "find_acquisitions",
    "find_participants",
    "kfold_subjects",
    "load_datalist",
    "make_datalist",
    "match_participants",
    "parse_age",
    "parse_groups",
    "read_participants",
    "split_subjects",
    "split_summary",
    "user_cache_dir",
    "write_datalist",
]
