"""Which layout a dataset folder is in, its acquisitions, and its participants table.

``dataset_layout`` (bundle) / ``--layout`` (CLI) is one of :data:`DATASET_LAYOUTS`:

==================  ===========================================================================
``auto``            detected from the folder (:func:`detect_layout`), the default
``hcp``             HCP minimally preprocessed, ``<subject>/T1w/Diffusion/data.nii.gz``
``hcp-unprocessed`` HCP unprocessed runs, ``<subject>/unprocessed/3T/Diffusion/*_DWI_dir*.nii.gz``
``bids``            raw BIDS, ``sub-*/[ses-*/]dwi/*_dwi.nii.gz`` (pybids; brain masks computed)
``qsiprep``         QSIPrep derivatives, ``*_space-ACPC_desc-preproc_dwi.nii.gz`` + ``desc-brain_mask``
``fa``              FA maps given: QSIRecon ``*_param-fa_dwimap.nii.gz`` or a table ``fa_maps.csv``
==================  ===========================================================================

Detection looks at names only (a few globs, no file is read). A layout forced on a folder that
looks like another is an error that says which one it looks like.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcp_cam.data.discovery import LAYOUTS as HCP_PATTERNS
from hcp_cam.data.discovery import Acquisition, discover_acquisitions
from hcp_cam.errors import ConfigError, InputError

__all__ = [
    "DATASET_LAYOUTS",
    "FolderSignals",
    "inspect_folder",
    "detect_layout",
    "find_acquisitions",
    "resolve_layout",
    "check_layout",
]

logger = logging.getLogger(__name__)

DATASET_LAYOUTS = ("auto", "hcp", "hcp-unprocessed", "bids", "qsiprep", "fa")


def check_layout(layout: str | None) -> str:
    """``layout`` lower-cased, ``None``/empty as ``auto``.

    Raises:
        ConfigError: not one of :data:`DATASET_LAYOUTS`.
    """
    name = "auto" if layout is None or str(layout).strip().lower() in ("", "none", "null") else str(layout)
    name = name.strip().lower()
    if name not in DATASET_LAYOUTS:
        raise ConfigError(f"dataset_layout must be one of {', '.join(DATASET_LAYOUTS)}, got {layout!r}")
    return name


def _first(root: Path, patterns: tuple[str, ...]) -> Path | None:
    for pattern in patterns:
        for path in root.glob(pattern):
            return path
    return None


_SUBJECT_DWI = ("sub-*/dwi/", "sub-*/ses-*/dwi/")


@dataclass(frozen=True)
class FolderSignals:
    """What a folder's names say about its layout (see :func:`inspect_folder`)."""

    root: Path
    hcp_preprocessed: bool = False
    hcp_unprocessed: bool = False
    description: Mapping[str, Any] = field(default_factory=dict)
    subject_folders: bool = False
    raw_dwi: Path | None = None
    preproc_dwi: Path | None = None
    fa_maps: Path | None = None
    fa_table: Path | None = None
    derivative_dwi: tuple[Path, ...] = ()

    @property
    def is_derivative(self) -> bool:
        return str(self.description.get("DatasetType", "")).lower() == "derivative"

    @property
    def is_bids(self) -> bool:
        return bool(self.description) or self.subject_folders

    def looks_like(self) -> str:
        """A phrase naming the layout the folder looks like, with the evidence."""
        if self.hcp_preprocessed or self.hcp_unprocessed:
            return "an HCP dataset (<subject>/T1w/Diffusion or <subject>/unprocessed/3T/Diffusion folders)"
        if self.fa_table is not None:
            return f"a folder of FA maps ({self.fa_table.name})"
        if self.fa_maps is not None:
            return f"QSIRecon FA maps ({self.fa_maps.name})"
        if self.preproc_dwi is not None:
            return f"QSIPrep derivatives ({self.preproc_dwi.name})"
        if self.raw_dwi is not None:
            return f"a raw BIDS dataset ({self.raw_dwi.name}, no desc-preproc)"
        if self.is_derivative:
            return "a BIDS derivatives folder (dataset_description.json: DatasetType derivative)"
        if self.is_bids:
            return "a BIDS dataset without diffusion data"
        return "none of the layouts"


def inspect_folder(root: str | os.PathLike) -> FolderSignals:
    """Glob the names that tell the layouts apart; nothing is read but ``dataset_description.json``."""
    root = Path(root)
    description: dict[str, Any] = {}
    desc_file = root / "dataset_description.json"
    if desc_file.is_file():
        try:
            loaded = json.loads(desc_file.read_text(encoding="utf-8"))
            description = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError) as e:
            raise InputError(f"not a readable JSON file: {e}", desc_file) from e
    raw = None
    for folder in _SUBJECT_DWI:
        raw = next((p for p in root.glob(f"{folder}*_dwi.nii*") if "_desc-" not in p.name), None)
        if raw is not None:
            break
    preproc = _first(root, tuple(f"{d}*_desc-preproc_dwi.nii*" for d in _SUBJECT_DWI))
    from hcp_cam.data.fa_inputs import find_fa_table

    derivatives = root / "derivatives"
    derivative_dwi = ()
    if derivatives.is_dir():
        derivative_dwi = tuple(
            sorted(
                d
                for d in derivatives.iterdir()
                if d.is_dir() and _first(d, tuple(f"{s}*_desc-preproc_dwi.nii*" for s in _SUBJECT_DWI))
            )
        )
    return FolderSignals(
        root=root,
        hcp_preprocessed=_first(root, ("*/T1w/Diffusion",)) is not None,
        hcp_unprocessed=_first(root, ("*/unprocessed/3T/Diffusion",)) is not None,
        description=description,
        subject_folders=_first(root, ("sub-*/",)) is not None,
        raw_dwi=raw,
        preproc_dwi=preproc,
        fa_maps=_first(root, tuple(f"{d}*_param-fa_dwimap.nii*" for d in _SUBJECT_DWI)),
        fa_table=find_fa_table(root),
        derivative_dwi=derivative_dwi,
    )


def _no_dwi_message(signals: FolderSignals) -> str:
    from hcp_cam.data.bids import BIDS_PATTERN

    text = f"a BIDS root without any *_dwi.nii[.gz]: looked for {BIDS_PATTERN}"
    if signals.derivative_dwi:
        found = ", ".join(str(d) for d in signals.derivative_dwi)
        text += f"; its derivatives hold QSIPrep-like DWIs: pass that folder as the dataset ({found})"
    return text


def detect_layout(root: str | os.PathLike, signals: FolderSignals | None = None) -> str:
    """The layout of ``root``: ``hcp`` (either HCP layout), ``fa``, ``qsiprep`` or ``bids``.

    Order: HCP folders; an FA table or QSIRecon FA maps; QSIPrep DWIs (``desc-preproc``); raw BIDS.

    Raises:
        InputError: ``root`` is not a folder; a BIDS dataset with no DWI (the message points at
            ``derivatives/<pipeline>`` where one holds QSIPrep-like data); none of the layouts (the
            message lists what was looked for).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("dataset folder not found (or not a folder)", root)
    s = signals or inspect_folder(root)
    if s.hcp_preprocessed or s.hcp_unprocessed:
        return "hcp"
    if s.fa_table is not None or s.fa_maps is not None:
        return "fa"
    if s.preproc_dwi is not None:
        return "qsiprep"
    if s.raw_dwi is not None:
        return "bids"
    if s.is_bids:
        raise InputError(_no_dwi_message(s), root)
    from hcp_cam.data.bids import BIDS_PATTERN
    from hcp_cam.data.qsiprep import QSIPREP_PATTERN

    looked_for = "; ".join(
        [*HCP_PATTERNS, BIDS_PATTERN, QSIPREP_PATTERN, "fa_maps.csv or *_param-fa_dwimap.nii.gz"]
    )
    raise InputError(f"no diffusion acquisitions found; looked for: {looked_for}", root)


def _refuse_mismatch(layout: str, s: FolderSignals) -> None:
    """A forced layout on a folder that plainly is another one: say which it looks like."""
    hint = {"bids": "--layout bids", "qsiprep": "--layout qsiprep", "fa": "--layout fa"}
    if layout == "bids" and s.raw_dwi is None and (s.preproc_dwi is not None or s.is_derivative):
        use = hint["fa"] if s.fa_maps is not None else hint["qsiprep"]
        raise InputError(f"raw BIDS was asked for, but this looks like {s.looks_like()}; use {use}", s.root)
    if layout == "bids" and s.raw_dwi is None and s.is_bids:
        raise InputError(_no_dwi_message(s), s.root)
    if layout == "qsiprep" and s.preproc_dwi is None:
        if s.raw_dwi is not None:
            where = f" or pass its QSIPrep folder ({s.derivative_dwi[0]})" if s.derivative_dwi else ""
            raise InputError(
                f"QSIPrep derivatives were asked for, but this looks like {s.looks_like()}; "
                f"use --layout bids{where}",
                s.root,
            )
        if s.derivative_dwi:
            raise InputError(
                f"QSIPrep derivatives were asked for, but this is {s.looks_like()}; "
                f"pass its QSIPrep folder: {s.derivative_dwi[0]}",
                s.root,
            )
    if layout in ("hcp", "hcp-unprocessed") and not (s.hcp_preprocessed or s.hcp_unprocessed) and s.is_bids:
        raise InputError(
            f"an HCP layout was asked for, but this looks like {s.looks_like()}; use --layout auto", s.root
        )


def resolve_layout(root: str | os.PathLike, layout: str = "auto") -> str:
    """The layout ``root`` is read in: detected for ``auto`` (see :func:`detect_layout`; ``hcp``
    then covers both HCP layouts), else ``layout`` once checked against what the folder looks like.

    Raises:
        ConfigError: an unknown layout name.
        InputError: see :func:`detect_layout`; a forced layout on a folder that looks like another.
    """
    layout = check_layout(layout)
    root = Path(root)
    if not root.is_dir():
        raise InputError("dataset folder not found (or not a folder)", root)
    signals = inspect_folder(root)
    if layout == "auto":
        return detect_layout(root, signals)
    _refuse_mismatch(layout, signals)
    return layout


def find_acquisitions(
    root: str | os.PathLike, layout: str = "auto", index_dir: str | os.PathLike | None = None
) -> tuple[str, list[Acquisition]]:
    """The layout (detected for ``auto``) and every acquisition of ``root`` in it.

    Args:
        root: the dataset folder.
        layout: one of :data:`DATASET_LAYOUTS`.
        index_dir: where pybids keeps its database (BIDS, QSIPrep, QSIRecon); ``None``: in memory.

    Returns:
        ``(layout, acquisitions)``, the acquisitions sorted by subject then name.

    Raises:
        ConfigError: an unknown layout name.
        InputError: see :func:`resolve_layout` and the layout readers (missing or mis-counted
            gradient files, no acquisition).
    """
    asked = check_layout(layout)
    layout = resolve_layout(root, asked)
    root = Path(root)
    if layout == "hcp":
        kinds = ("preprocessed", "unprocessed") if asked == "auto" else ("preprocessed",)
        found = discover_acquisitions(root, kinds=kinds)
    elif layout == "hcp-unprocessed":
        found = discover_acquisitions(root, kinds=("unprocessed",))
    elif layout == "bids":
        from hcp_cam.data.bids import find_bids_acquisitions

        found = find_bids_acquisitions(root, index_dir)
    elif layout == "qsiprep":
        from hcp_cam.data.qsiprep import find_qsiprep_acquisitions

        found = find_qsiprep_acquisitions(root, index_dir)
    else:
        from hcp_cam.data.fa_inputs import find_fa_acquisitions

        found = find_fa_acquisitions(root, index_dir)
    logger.info("%s: %s layout, %d acquisition(s)", root, layout, len(found))
    return layout, found
