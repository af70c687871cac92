"""The report of a group output (``hcp-cam group ... --out OUT``): ``OUT/report.html``.

Reads the names ``hcp-cam group`` writes (all optional but the template):

- ``template.nii.gz``: the FA template every map is on (the viewer's background);
- ``group_difference_cam.nii.gz`` with ``_t`` and ``_p`` (family-wise-error p) twins, and
  ``group_difference_fa.nii.gz``: later group minus earlier group;
- ``group_<group>_mean_cam.nii.gz`` (and ``_mean_fa``) per group;
- ``regions.csv`` (atlas table), ``clusters.csv``, ``registration_qc.csv``, ``group_overview.png``;
- any ``*.json`` at the top level is shown under provenance (the recorded settings); ``group.json``'s
  ``cam_scale`` (how each subject's CAM was scaled before the tests) is said above the maps.

A map whose grid differs from the template's is left out of the viewer with a note. NaN in a map
(``hcp-cam group``'s unknown or untested voxels) is shown as 0.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from hcp_cam.errors import InputError
from hcp_cam.io import load_nifti
from hcp_cam.reports.embed import embed_volume
from hcp_cam.reports.html import (
    Section,
    check_output_path,
    figure,
    frame_table,
    notes,
    render_page,
    write_page,
)
from hcp_cam.reports.run_folder import read_csv, read_json
from hcp_cam.reports.sections import provenance_section
from hcp_cam.reports.viewer import Scene, viewer_html, viewer_scripts

__all__ = ["GROUP_FILES", "is_group_folder", "group_scenes", "group_sections", "write_group_report"]

logger = logging.getLogger(__name__)

GROUP_FILES = {
    "template": "template.nii.gz",
    "difference": "group_difference_cam.nii.gz",
    "difference_t": "group_difference_cam_t.nii.gz",
    "difference_p": "group_difference_cam_p.nii.gz",
    "difference_fa": "group_difference_fa.nii.gz",
    "regions": "regions.csv",
    "clusters": "clusters.csv",
    "qc": "registration_qc.csv",
    "overview": "group_overview.png",
}
ALPHA = 0.05


def is_group_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a group output (its template or its group difference map)."""
    p = Path(path)
    return (p / GROUP_FILES["template"]).is_file() or (p / GROUP_FILES["difference"]).is_file()


def _groups(root: Path) -> list[str]:
    return sorted(
        p.name[len("group_") : -len("_mean_cam.nii.gz")] for p in root.glob("group_*_mean_cam.nii.gz")
    )


def _on_grid(img: nib.Nifti1Image, ref: nib.Nifti1Image) -> bool:
    return img.shape[:3] == ref.shape[:3] and np.allclose(img.affine, ref.affine, atol=1e-4)


def _values(img: nib.Nifti1Image) -> np.ndarray:
    """A map's voxels with NaN (unknown, untested) as 0: for the scale, the peak and the viewer."""
    return np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def group_scenes(root: Path) -> tuple[list[Scene], list[str]]:
    """Scenes over the template: the CAM difference (all voxels, then only where FWE p < 0.05), its
    t map, the FA difference, and each group's mean CAM; notes on what was left out."""
    tpath = root / GROUP_FILES["template"]
    if not tpath.is_file():
        return [], [f"no {GROUP_FILES['template']}: the group maps cannot be shown over a template"]
    template = load_nifti(tpath, ndim=3)
    t = np.asarray(template.dataobj, dtype=np.float32)
    top = float(np.percentile(t[t > 0], 99.5)) if (t > 0).any() else 1.0
    background = embed_volume(template, "template FA", colormap="gray", cal_max=top, role="background")
    out, notes_ = [], []

    def signed_scene(key: str, name: str, label: str, note: str, data_fn=None) -> None:
        path = root / name
        if not path.is_file():
            return
        img = load_nifti(path, ndim=3, finite=False)
        if not _on_grid(img, template):
            notes_.append(f"{name}: grid {img.shape} differs from the template's {template.shape}; left out")
            return
        data = _values(img) if data_fn is None else data_fn(img)
        if data is None:
            return
        vmax = float(np.abs(data).max()) or 1.0
        overlay = embed_volume(
            img, label, data=data, signed=True, colormap="warm", colormap_negative="winter",
            cal_min=0.2 * vmax, cal_max=vmax, opacity=0.8, colorbar=True, role="overlay",
        )  # fmt: skip
        peak = np.unravel_index(int(np.argmax(np.abs(data))), data.shape)
        peak_mm = nib.affines.apply_affine(img.affine, peak).tolist()
        out.append(
            Scene(
                key, label, [background, overlay], peak_mm=peak_mm, note=note, affine=template.affine.tolist()
            )
        )

    def significant(img: nib.Nifti1Image) -> np.ndarray | None:
        ppath = root / GROUP_FILES["difference_p"]
        if not ppath.is_file():
            return None
        p = load_nifti(ppath, ndim=3, finite=False)
        if not _on_grid(p, template):
            notes_.append(f"{ppath.name}: not on the template's grid; the thresholded map is left out")
            return None
        keep = np.asarray(p.dataobj) < ALPHA
        if not keep.any():
            notes_.append(
                f"no voxel has a family-wise-error p < {ALPHA}: the thresholded difference map is empty"
            )
            return None
        return np.where(keep, _values(img), 0.0)

    later_minus = (
        "later minus earlier group of the grouping rule (warm: higher in the later group, cool: lower)"
    )
    signed_scene("difference", GROUP_FILES["difference"], "CAM difference", f"Mean CAM, {later_minus}.")
    signed_scene(
        "difference-significant", GROUP_FILES["difference"], f"CAM difference, FWE p < {ALPHA}",
        f"The CAM difference where the permutation test's family-wise-error p < {ALPHA}.", significant,
    )  # fmt: skip
    signed_scene(
        "difference-t", GROUP_FILES["difference_t"], "CAM difference t", f"Voxelwise t, {later_minus}."
    )
    signed_scene("difference-fa", GROUP_FILES["difference_fa"], "FA difference", f"Mean FA, {later_minus}.")
    for g in _groups(root):
        name = f"group_{g}_mean_cam.nii.gz"
        img = load_nifti(root / name, ndim=3, finite=False)
        if not _on_grid(img, template):
            notes_.append(f"{name}: not on the template's grid; left out")
            continue
        data = _values(img)
        vmax = float(np.abs(data).max()) or 1.0
        overlay = embed_volume(
            img, f"mean CAM {g}", data=data, colormap="warm", colormap_negative="winter", signed=True,
            cal_min=0.2 * vmax, cal_max=vmax, opacity=0.8, colorbar=True, role="overlay",
        )  # fmt: skip
        out.append(
            Scene(f"mean-{g}", f"mean CAM, group {g}", [background, overlay], affine=template.affine.tolist())
        )
    if len(out) == 0:
        notes_.append("no group map next to the template")
    return out, notes_


def _csv_section(root: Path, key: str, title: str, sort: str | None = None, rows: int = 25) -> str:
    path = root / GROUP_FILES[key]
    if not path.is_file():
        return f'<p class="note">No {GROUP_FILES[key]}.</p>'
    df = read_csv(path)
    shown = df.sort_values(sort, kind="stable") if sort and sort in df else df
    out = f"<h3>{title}</h3><div class='wide'>{frame_table(shown, max_rows=rows)}</div>"
    if len(df) > rows:
        out += f"<details><summary>All {len(df)} rows</summary><div class='wide'>{frame_table(shown)}</div></details>"
    return out


def _qc(root: Path) -> str:
    path = root / GROUP_FILES["qc"]
    if not path.is_file():
        return '<p class="note">No registration_qc.csv.</p>'
    df = read_csv(path)
    # the subjects hcp-cam group flags (correlation with the template below its threshold)
    flags = [c for c in df.columns if "flag" in c.lower()]
    warn = [
        f"registration flagged ({c}): {r['subject'] if 'subject' in df else r.iloc[0]}"
        for c in flags
        for _, r in df[df[c].astype(str).str.lower().isin(("true", "1", "yes"))].iterrows()
    ]
    return notes(warn) + f"<h3>Registration quality</h3><div class='wide'>{frame_table(df)}</div>"


def _cam_scale_note(root: Path) -> list[str]:
    """What the CAM maps' values are (``group.json``'s ``cam_scale``), when the record says."""
    record = root / "group.json"
    info = read_json(record) if record.is_file() else {}
    scale = info.get("cam_scale")
    if not scale:
        return []
    units = info.get("cam_units")
    return [f"CAM scaling: {scale}" + (f" ({units})" if units else "")]


def group_sections(root: str | os.PathLike, element_id: str = "nv") -> tuple[list[Section], list[Scene]]:
    """The group output's sections (maps with the viewer, atlas and cluster tables, registration QC)."""
    root = Path(root)
    scenes, scene_notes = group_scenes(root)
    body = notes(_cam_scale_note(root) + scene_notes, cls="note")
    overview = root / GROUP_FILES["overview"]
    if overview.is_file():
        body += figure(
            overview,
            "Template with the group difference map through its peak; warped FA edges of every subject",
        )
    body += viewer_html(scenes, element_id=element_id)
    maps = Section(f"{element_id}-group-maps", "Group maps", body)
    tables = (
        _csv_section(root, "regions", "Atlas regions", sort="p_value")
        + '<p class="note">Sorted by permutation p-value (family-wise error over labels) when the table has one.</p>'
        + _csv_section(root, "clusters", "Clusters of the difference map")
    )
    return [maps, Section(f"{element_id}-group-tables", "Regions and clusters", tables),
            Section(f"{element_id}-group-qc", "Registration", _qc(root))], scenes  # fmt: skip


def write_group_report(
    group_dir: str | os.PathLike, out: str | os.PathLike | None = None, command: list[str] | None = None
) -> Path:
    """Write the group output's report (default ``<group_dir>/report.html``) and return its path.

    Raises:
        InputError: not a group output folder, an unreadable input, or ``out`` is a folder or not writable.
    """
    root = Path(group_dir)
    if not root.is_dir():
        raise InputError("group output folder not found", root)
    if not is_group_folder(root):
        raise InputError(
            f"not a group output: neither {GROUP_FILES['template']} nor {GROUP_FILES['difference']} is in it",
            root,
        )
    path = check_output_path(Path(out) if out is not None else root / "report.html")
    sections, scenes = group_sections(root)
    configs = {p.name: read_json(p) for p in sorted(root.glob("*.json"))}
    sections.append(provenance_section(root, configs, command))
    n_subjects = ""
    qc = root / GROUP_FILES["qc"]
    if qc.is_file():
        n_subjects = f" · {len(read_csv(qc))} subjects"
    text = render_page(
        f"hcp-cam group maps: {root.name}",
        f"{root}{n_subjects}",
        sections,
        viewer_scripts() if scenes else [],
    )
    return write_page(text, path)
