"""The page's interactive viewer: NiiVue on one ``<canvas>``, one scene (a set of volumes) at a time.

A scene is a background (FA, or a template), one overlay (a CAM, a group difference map) and
optional outlines (the CAM's box, a ground-truth region). The page shows three planes and a 3D
render (NiiVue's multiplanar layout), the overlay's colour bar, controls for the overlay's threshold
and opacity and for the outlines, and under the canvas the cursor's world coordinates (mm, RAS),
voxel indices and every volume's value there. Mouse and keyboard work as everywhere in NiiVue
(click or drag to move the cursor, right-drag to adjust contrast, scroll to change slice, drag the
3D render to rotate it).

The volumes sit in ``<script type="text/plain">`` elements as base64 ``.nii.gz`` and are decoded
only when their scene is chosen, so a page with many subjects opens quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hcp_cam.reports.embed import EmbeddedVolume, asset_text, niivue_info, niivue_script
from hcp_cam.reports.html import esc, inline_script, json_block

__all__ = ["Scene", "viewer_html", "viewer_scripts", "LAYOUTS"]

# NiiVue slice types: (value of niivue.SLICE_TYPE, label)
LAYOUTS = ((3, "3 planes + 3D"), (0, "axial"), (1, "coronal"), (2, "sagittal"), (4, "3D render"))


@dataclass
class Scene:
    """One choice of the viewer's menu.

    Attributes:
        id: unique key (e.g. ``"559594/dwi"``); the page sets ``data-scene`` to it once drawn.
        label: what the menu shows.
        volumes: background first, then overlay(s), then outlines.
        peak_mm: where the cursor starts (RAS mm), e.g. the CAM peak; ``None`` for the volume centre.
        note: a line shown under the menu for this scene (e.g. what a value means).
        affine: the background's voxel-to-world (RAS mm) ``(4, 4)`` affine; the readout gives the
            cursor's voxel indices in that file's own array order (NiiVue's own are of its RAS-resliced grid).
    """

    id: str
    label: str
    volumes: list[EmbeddedVolume]
    peak_mm: Sequence[float] | None = None
    note: str = ""
    affine: Sequence[Sequence[float]] | None = None

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.volumes)


def viewer_html(scenes: Sequence[Scene], element_id: str = "nv") -> str:
    """The viewer's markup (controls, canvas, readout) and its data; the scripts come separately.

    Returns an explanation instead of a viewer when ``scenes`` is empty.
    """
    if not scenes:
        return '<p class="note">No volumes to show.</p>'
    specs, blobs = [], []
    n = 0
    for s in scenes:
        vols = []
        for v in s.volumes:
            ref = f"{element_id}-vol-{n}"
            n += 1
            vols.append(v.spec(ref))
            blobs.append(f'<script type="text/plain" id="{ref}">{v.data}</script>')
        specs.append(
            {
                "id": s.id,
                "label": s.label,
                "note": s.note,
                "peak_mm": None if s.peak_mm is None else [float(x) for x in s.peak_mm],
                "world_to_voxel": None
                if s.affine is None
                else np.linalg.inv(np.asarray(s.affine, float)).tolist(),
                "volumes": vols,
            }
        )
    options = "".join(f'<option value="{i}">{esc(s.label)}</option>' for i, s in enumerate(scenes))
    layouts = "".join(f'<option value="{v}">{esc(t)}</option>' for v, t in LAYOUTS)
    info = niivue_info()
    return (
        f'<div class="viewer" id="{esc(element_id)}" data-state="idle">'
        '<div class="controls">'
        f'<label>Show <select data-nv="scene">{options}</select></label>'
        f'<label>View <select data-nv="layout">{layouts}</select></label>'
        '<label>Threshold <input type="range" data-nv="threshold" min="0" max="1" step="0.01" value="0.2">'
        ' <output data-nv="threshold-value">0.20</output></label>'
        '<label>Opacity <input type="range" data-nv="opacity" min="0" max="1" step="0.05" value="0.7">'
        ' <output data-nv="opacity-value">0.70</output></label>'
        '<span data-nv="outlines"></span>'
        "</div>"
        '<p class="note" data-nv="note"></p>'
        '<div class="canvas-box"><canvas data-nv="canvas" width="960" height="720"></canvas></div>'
        '<p class="readout" data-nv="location" aria-live="polite">Click a plane to read the values under the cursor.</p>'
        '<p class="note" data-nv="status"></p>'
        '<p class="note">Threshold is a fraction of the overlay\'s largest absolute value; values below it are '
        "transparent. Values are 8-bit quantised copies of the NIfTI files (a step of 1/255 of the map's range, "
        "1/127 for signed maps). Mouse: click or drag to move the cursor, scroll to change slice, right-drag "
        f"for contrast, drag the 3D view to rotate. Viewer: NiiVue {esc(info['version'])} (BSD-2-Clause).</p>"
        "</div>" + json_block(f"{element_id}-scenes", specs) + "".join(blobs)
    )


def viewer_scripts() -> list[str]:
    """NiiVue and the viewer's own script, as inline ``<script>`` elements (put them after the markup)."""
    return [inline_script(niivue_script()), inline_script(asset_text("assets/viewer.js"))]
