"""Datasets: discovery of HCP, BIDS, QSIPrep and FA-map layouts, the participants table and its age
groups, subject-level splits and the MONAI datalist that ties them together (see docs/data.md)."""

from hcp_cam.lazy import lazy_exports

# public name -> the submodule that defines it (loaded on first use: `hcp-cam fa` needs no pandas)
_NAMES = {
    "user_cache_dir": "cache",
    "PATH_KEYS": "datalist",
    "find_participants": "datalist",
    "load_datalist": "datalist",
    "make_datalist": "datalist",
    "split_summary": "datalist",
    "write_datalist": "datalist",
    "LAYOUTS": "discovery",
    "Acquisition": "discovery",
    "discover_acquisitions": "discovery",
    "DATASET_LAYOUTS": "layouts",
    "find_acquisitions": "layouts",
    "DEFAULT_GROUPS": "participants",
    "AgeGroups": "participants",
    "match_participants": "participants",
    "parse_age": "participants",
    "parse_groups": "participants",
    "read_participants": "participants",
    "SPLITS": "splits",
    "kfold_subjects": "splits",
    "split_subjects": "splits",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
