"""QSIPrep derivatives: ``sub-<label>[/ses-<label>]/dwi/*_space-<space>_desc-preproc_dwi.nii[.gz]``.

Each preprocessed DWI comes with its ``.bval``/``.bvec`` beside it (found, as in raw BIDS, by the
inheritance principle) and a brain mask ``*_space-<space>_desc-brain_mask.nii[.gz]`` with the same
entities. QSIPrep writes ``space-ACPC`` (releases before 0.18: ``space-T1w``); where a DWI is
stored in both, the ACPC one is used. A DWI whose mask is missing gets one computed from its mean
b0, as raw BIDS does, and the log says so. QSIPrep writes no participants table: it is given with
``--participants`` (bundle: ``participants_file``), or found in the raw BIDS dataset that holds the
derivatives (``<bids>/derivatives/qsiprep``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hcp_cam.data.bids import _NIFTI_EXTENSIONS, _acquisitions, bids_index
from hcp_cam.data.discovery import Acquisition
from hcp_cam.errors import InputError

__all__ = ["QSIPREP_PATTERN", "SPACES", "find_qsiprep_acquisitions"]

logger = logging.getLogger(__name__)

QSIPREP_PATTERN = (
    "sub-<label>[/ses-<label>]/dwi/sub-<label>[_ses-<label>]..._space-ACPC_desc-preproc_dwi.nii[.gz]"
)
# preferred first: QSIPrep's current output space, then the name older releases used
SPACES = ("ACPC", "T1w")
_MATCH_KEYS = ("subject", "session", "acquisition", "direction", "run", "space")


def _key(bids_file: Any) -> tuple:
    ents = bids_file.get_entities()
    return tuple(str(ents.get(k, "")) for k in _MATCH_KEYS)


def find_qsiprep_acquisitions(
    root: str | os.PathLike, index_dir: str | os.PathLike | None = None
) -> list[Acquisition]:
    """Every preprocessed DWI of a QSIPrep output folder, with its gradients and brain mask.

    Args:
        root: the QSIPrep derivatives folder (``.../derivatives/qsiprep``, with ``sub-*`` in it).
        index_dir: pybids' database cache (see :func:`hcp_cam.data.bids.bids_index`).

    Returns:
        acquisitions sorted by subject and name (``subject`` ``sub-<label>``, ``acquisition`` e.g.
        ``ses-1_space-ACPC_desc-preproc_dwi``), each with its ``mask``.

    Raises:
        InputError: no ``*_desc-preproc_dwi.nii[.gz]`` in space ACPC or T1w; missing or mis-counted
            gradient files (see :func:`hcp_cam.data.bids.find_bids_acquisitions`).
    """
    root = Path(root).resolve()
    layout = bids_index(root, index_dir, derivative=True)
    files = layout.get(datatype="dwi", suffix="dwi", desc="preproc", extension=_NIFTI_EXTENSIONS)
    by_space = [f for f in files if str(f.get_entities().get("space")) in SPACES]
    if not by_space:
        spaces = sorted({str(f.get_entities().get("space")) for f in files})
        other = f" (found only space {', '.join(spaces)})" if spaces else ""
        raise InputError(f"no QSIPrep DWI{other}: looked for {QSIPREP_PATTERN} (or space-T1w)", root)
    # one DWI per acquisition: ACPC where both spaces exist
    chosen: dict[tuple, Any] = {}
    for f in sorted(by_space, key=lambda f: SPACES.index(str(f.get_entities()["space"]))):
        key = _key(f)[:-1]
        if key in chosen:
            logger.info("%s: using %s, not the space-T1w copy %s", root, chosen[key].filename, f.filename)
            continue
        chosen[key] = f
    masks = {
        _key(m): Path(m.path)
        for m in layout.get(datatype="dwi", suffix="mask", desc="brain", extension=_NIFTI_EXTENSIONS)
    }
    found = {}
    for f in chosen.values():
        mask = masks.get(_key(f))
        if mask is None:
            logger.warning(
                "%s: no *_desc-brain_mask beside it; a mask is computed from its mean b0 (median_otsu)",
                f.path,
            )
        else:
            found[f.path] = mask
    return _acquisitions(layout, chosen.values(), root, compute_mask=True, masks=found)
