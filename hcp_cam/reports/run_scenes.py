"""Viewer scenes of a run: per test acquisition, its FA with the CAM, the CAM's box and the known region.

Inputs per row of ``cam/summary.csv`` (test split only when it has a ``split`` column):

- the FA the CAM was computed on (the row's ``fa``; relative paths are taken from the run folder);
- ``cam/<subject>/<acquisition>_cam01.nii.gz`` (the display map, [0, 1] per volume);
- ``cam/<subject>/<acquisition>_bbox.json`` (the box and the peak, where the cursor starts);
- ``<dataset_dir>/derivatives/ground_truth/<subject>_roi.nii.gz`` when it exists (synthetic data).

A missing FA leaves the CAM alone on a black background; a missing CAM file, a grid that differs
from the FA, or a missing region is said in a note on the page, never an error: the run's other
sections are still worth reading.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from hcp_cam.errors import InputError
from hcp_cam.io import load_nifti, recorded_path
from hcp_cam.reports.embed import EmbeddedVolume, box_shell, embed_volume, region_outline
from hcp_cam.reports.run_folder import RunFolder
from hcp_cam.reports.viewer import Scene

__all__ = ["run_scenes", "cam_scene"]

logger = logging.getLogger(__name__)


def _resolve(run: RunFolder, value: object) -> Path | None:
    if not isinstance(value, str) or not value:
        return None
    return recorded_path(value, run.path)


def cam_scene(
    scene_id: str,
    label: str,
    cam_path: Path,
    fa_path: Path | None,
    bbox: dict | None = None,
    roi_path: Path | None = None,
) -> tuple[Scene, list[str]]:
    """One scene: FA (grey), the CAM (warm, from 0.2), the box (green) and the region (blue).

    Returns:
        the scene and notes about what could not be added.

    Raises:
        InputError: the CAM file is unreadable.
    """
    notes: list[str] = []
    cam_img = load_nifti(cam_path, ndim=3)
    cam_class = (bbox or {}).get("cam_class", "")
    volumes: list[EmbeddedVolume] = []
    if fa_path is not None and fa_path.is_file():
        fa_img = load_nifti(fa_path, ndim=3)
        if fa_img.shape != cam_img.shape or not np.allclose(fa_img.affine, cam_img.affine, atol=1e-4):
            notes.append(f"{scene_id}: the FA {fa_path} is not on the CAM's grid; the CAM is shown alone")
        else:
            fa = np.asarray(fa_img.dataobj, dtype=np.float32)
            top = float(np.percentile(fa[fa > 0], 99.5)) if (fa > 0).any() else 1.0
            volumes.append(
                embed_volume(fa_img, "FA", colormap="gray", cal_min=0.0, cal_max=top, role="background")
            )
    else:
        notes.append(f"{scene_id}: FA not found ({fa_path}); the CAM is shown alone")
    if not volumes:  # NiiVue draws the first volume as the background: an empty one on the CAM's grid
        volumes.append(
            embed_volume(cam_img, "background", data=np.zeros(cam_img.shape, np.uint8), role="background")
        )
    volumes.append(
        embed_volume(
            cam_img, f"CAM {cam_class} [0,1]".replace("  ", " "), colormap="warm", cal_min=0.2, cal_max=1.0,
            opacity=0.7, colorbar=True, role="overlay",
        )
    )  # fmt: skip
    box = (bbox or {}).get("box") or {}
    if box and not box.get("empty", True):
        shell = box_shell(cam_img.shape, box["min_index"], box["max_index"])
        volumes.append(
            embed_volume(
                cam_img,
                "CAM box",
                data=shell,
                colormap="green",
                cal_min=0.5,
                cal_max=1.0,
                opacity=0.6,
                role="outline",
            )
        )
    if roi_path is not None and roi_path.is_file():
        roi_img = load_nifti(roi_path, ndim=3)
        if roi_img.shape == cam_img.shape:
            outline = region_outline(np.asarray(roi_img.dataobj) > 0)
            volumes.append(
                embed_volume(
                    cam_img, "true region", data=outline, colormap="blue", cal_min=0.5, cal_max=1.0,
                    opacity=0.8, role="outline",
                )
            )  # fmt: skip
        else:
            notes.append(f"{scene_id}: the ground-truth region {roi_path} is on another grid; left out")
    peak = (bbox or {}).get("peak_mm")
    note = (
        "CAM [0,1] is scaled per volume over the voxels the network saw; 0 there means lowest or unknown "
        "(slices the network never saw)."
    )
    scene = Scene(
        id=scene_id, label=label, volumes=volumes, peak_mm=peak, note=note, affine=cam_img.affine.tolist()
    )
    return scene, notes


def run_scenes(run: RunFolder, limit: int | None = None) -> tuple[list[Scene], list[str]]:
    """The viewer's scenes for every test acquisition with a CAM (the first ``limit`` only, when
    given: ~2 MB each at HCP size), and notes on what was left out."""
    if run.cam is None or not len(run.cam):
        return [], ["No CAM volumes in this run yet (the bundle's inference writes them)."]
    rows = run.cam[run.cam["split"] == "test"] if "split" in run.cam else run.cam
    if not len(rows):
        return [], ["cam/summary.csv has no test acquisition."]
    if limit is not None and limit < len(rows):
        left = len(rows) - max(0, limit)
        note = f"{left} of {len(rows)} test acquisitions are not in the viewer (viewer_subjects={limit}); their figures are above."
        rows = rows.head(max(0, limit))
        if not len(rows):
            return [], [note]
    else:
        note = None
    dataset = (run.config or {}).get("dataset_dir")
    truth = Path(dataset) / "derivatives" / "ground_truth" if dataset else None
    scenes, notes = [], []
    for _, r in rows.iterrows():
        subject, acq = str(r["subject"]), str(r.get("acquisition", "dwi"))
        prefix = run.path / "cam" / subject / acq
        cam_path = Path(f"{prefix}_cam01.nii.gz")
        if not cam_path.is_file():
            notes.append(f"{subject}/{acq}: {cam_path.name} not found; left out of the viewer")
            continue
        bbox_path = Path(f"{prefix}_bbox.json")
        bbox = None
        if bbox_path.is_file():
            try:
                bbox = json.loads(bbox_path.read_text())
            except json.JSONDecodeError as e:
                raise InputError(f"not valid JSON: {e}", bbox_path) from e
        fa_path = _resolve(run, r.get("fa")) or _resolve(run, (bbox or {}).get("fa"))
        roi = truth / f"{subject}_roi.nii.gz" if truth is not None else None
        group = r.get("group")
        label = f"{subject} {acq}" + (
            f" ({group}; predicted {r.get('predicted')})" if isinstance(group, str) else ""
        )
        scene, scene_notes = cam_scene(f"{subject}/{acq}", label, cam_path, fa_path, bbox, roi)
        scenes.append(scene)
        notes += scene_notes
    for n in notes:
        logger.warning("report viewer: %s", n)
    return scenes, notes + ([note] if note else [])
