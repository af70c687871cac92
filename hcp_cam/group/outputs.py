"""Writing a group analysis's outputs: the maps, tests, tables, figure and record of one call.

Every file is first written under a staging folder inside ``OUT`` (:class:`Stage`) and moved into
place at the end: a failed call leaves the previous outputs (or none), never a mix; outputs of an
earlier call that this one did not make (recorded in ``group.json``) are removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from hcp_cam.errors import InputError
from hcp_cam.group.atlas import Atlas
from hcp_cam.group.cam_scale import scale_cam
from hcp_cam.group.permutation import permutation_test
from hcp_cam.group.registration import RegistrationSettings
from hcp_cam.group.runs import Cohort
from hcp_cam.group.tables import cluster_table, region_table
from hcp_cam.group.template import template_mask
from hcp_cam.io import atomic_path, save_nifti_like, write_json_atomic

__all__ = ["CAM_UNITS", "GroupResult", "Stage", "previous_outputs", "write_outputs"]

CAM_UNITS = {
    "zscore": "each subject's CAM z-scored over its known voxels inside the template's brain: where a "
    "subject's map stands out within its own brain, a global gain or offset removed",
    "raw": "the CAM as the network wrote it (a larger class score scales a subject's whole map)",
}


@dataclasses.dataclass
class GroupResult:
    """What :func:`run_group_analysis` did.

    Attributes:
        out_dir: the output folder.
        files: the outputs written (relative to ``out_dir``), caches included.
        qc: ``registration_qc.csv`` as a table (the shard's acquisitions only, with ``shard``).
        regions: ``regions.csv`` (``None`` without an atlas, or for a shard).
        clusters: ``clusters.csv`` (``None`` for a shard).
        summary: ``group.json``'s content.
    """

    out_dir: Path
    files: list[str]
    qc: pd.DataFrame
    regions: pd.DataFrame | None = None
    clusters: pd.DataFrame | None = None
    summary: dict = dataclasses.field(default_factory=dict)


class Stage:
    """Outputs written under a staging folder in ``out`` and moved into place by :meth:`commit`."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.dir = Path(tempfile.mkdtemp(prefix=".group-staging-", dir=out))
        self.files: list[str] = []

    def path(self, rel: str) -> Path:
        self.files.append(rel)
        p = self.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self, previous: list[str]) -> None:
        for rel in self.files:
            dest = self.out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.dir / rel, dest)
        for rel in set(previous) - set(self.files):  # outputs of an earlier call this one did not make
            stale = self.out / rel
            if stale.is_file() and self.out.resolve() in stale.resolve().parents:
                stale.unlink()
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def previous_outputs(out: Path) -> list[str]:
    try:
        return list(json.loads((out / "group.json").read_text()).get("outputs", []))
    except (OSError, json.JSONDecodeError, AttributeError):
        return []


def write_outputs(
    out: Path, cohort: Cohort, groups: dict[str, str], tmpl_img: nib.Nifti1Image, tmpl_record: dict,
    atlas: Atlas | None, warped: dict, qc: pd.DataFrame, settings: RegistrationSettings, permutations: int,
    seed: int, alpha: float, min_coverage: float, qc_threshold: float, shuffle_groups: int | None,
    figure: bool, cache_files: list[str], progress: bool, cam_scale: str = "zscore",
) -> GroupResult:  # fmt: skip
    tmpl = np.asarray(tmpl_img.dataobj, dtype=np.float32)
    brain = template_mask(tmpl)
    subjects = sorted({m.subject for m in cohort.maps})
    keys_of = {s: [m.key for m in cohort.maps if m.subject == s] for s in subjects}
    # Each acquisition's CAM scaled on the template grid, over its known voxels inside the template's
    # brain: the domain the tests and the atlas see, the same anatomy for every subject (native brain
    # masks and the known slab differ in extent from head to head). The scaling is affine in the values
    # and the CAM warp is normalised interpolation, so scaling before or after warping gives the same
    # values on a voxel; only the domain of the mean and sd differs, and this one is comparable.
    scaled, cam_stats = {}, {}
    for m in cohort.maps:
        values, mean, sd = scale_cam(warped[m.key][1], brain, cam_scale, m.cam)
        scaled[m.key], cam_stats[m.key] = values, (mean, sd)
    qc = qc.assign(  # the raw CAM's mean and sd over that domain: the global shift, per subject
        cam_mean=[cam_stats[k][0] for k in qc["key"]], cam_sd=[cam_stats[k][1] for k in qc["key"]]
    )
    # one map per subject (the mean of its acquisitions): subjects, not acquisitions, are exchangeable
    with np.errstate(invalid="ignore"), _quiet():
        fa = np.stack([np.nanmean(np.stack([warped[k][0] for k in keys_of[s]]), 0) for s in subjects])
        cam = np.stack([np.nanmean(np.stack([scaled[k] for k in keys_of[s]]), 0) for s in subjects])
    fa[:, ~brain] = np.nan
    cam[:, ~brain] = np.nan
    labels = cohort.labels
    gidx = np.array([labels.index(groups[s]) for s in subjects])
    first, last = labels[0], labels[-1]
    sel = np.isin(gidx, (0, len(labels) - 1))
    binary = (gidx[sel] == len(labels) - 1).astype(int)
    stage = Stage(out)
    try:

        def save(data: np.ndarray, rel: str, desc: str) -> None:
            save_nifti_like(np.asarray(data, dtype=np.float32), tmpl_img, stage.path(rel), desc, np.float32)

        for m in cohort.maps:
            save(warped[m.key][0], f"subjects/{m.key}_fa.nii.gz", f"FA of {m.key} in template space")
            save(
                warped[m.key][1],
                f"subjects/{m.key}_cam.nii.gz",
                f"CAM {cohort.cam_class} of {m.key}; NaN unknown",
            )
        summary: dict[str, Any] = {}
        tests = {}
        scale_note = {"cam": "" if cam_scale == "raw" else f" ({cam_scale} per subject)", "fa": ""}
        for name, data in (("cam", cam), ("fa", fa)):
            for k, g in enumerate(labels):
                with np.errstate(invalid="ignore"), _quiet():
                    save(
                        np.nanmean(data[gidx == k], 0),
                        f"group_{g}_mean_{name}.nii.gz",
                        f"mean {name}{scale_note[name]} of group {g}",
                    )
            flat = data[sel].reshape(int(sel.sum()), -1)
            n1 = np.isfinite(flat[binary == 1]).sum(0)
            n0 = np.isfinite(flat[binary == 0]).sum(0)
            need1 = max(2, int(np.ceil(min_coverage * (binary == 1).sum())))
            need0 = max(2, int(np.ceil(min_coverage * (binary == 0).sum())))
            tested = (n1 >= need1) & (n0 >= need0) & brain.ravel()
            if not tested.any():
                raise InputError(
                    f"no template voxel has {name.upper()} values of enough subjects of both groups to test"
                )
            res = permutation_test(flat[:, tested], binary, permutations, seed, progress=progress)
            maps = {}
            for part, values in (("", res.difference), ("_t", res.t), ("_p", res.p_fwe)):
                vol = np.full(flat.shape[1], np.nan, dtype=np.float64)
                vol[tested] = values
                maps[part] = vol.reshape(tmpl.shape)
                what = {
                    "": f"{last} minus {first}",
                    "_t": "Welch t",
                    "_p": "FWE p (max-statistic permutations)",
                }[part]
                save(maps[part], f"group_difference_{name}{part}.nii.gz", f"{name} {what}")
            tests[name] = maps
            for what, pick in (
                ("peak", np.nanargmax),
                ("trough", np.nanargmin),
            ):  # largest and smallest difference
                at = np.unravel_index(int(pick(maps[""])), tmpl.shape)
                summary[f"{name}_difference_{what}"] = _voxel_record(at, maps, tmpl_img.affine, atlas)
            summary[f"{name}_tested_voxels"] = int(tested.sum())
            summary[f"{name}_significant_voxels"] = int((res.p_fwe < alpha).sum())
        clusters = pd.concat(
            [
                cluster_table(n, tests[n]["_t"], tests[n]["_p"], tests[n][""], tmpl_img.affine, alpha, atlas)
                for n in ("cam", "fa")
            ],
            ignore_index=True,
        )
        with atomic_path(stage.path("clusters.csv")) as tmp:
            clusters.to_csv(tmp, index=False)
        regions = None
        if atlas is not None:
            regions = region_table(cam, fa, gidx, labels, atlas, permutations, seed)
            with atomic_path(stage.path("regions.csv")) as tmp:
                regions.to_csv(tmp, index=False, float_format="%.6g")
            top = regions.sort_values("rank").iloc[0]
            summary["top_region"] = {"label": int(top["label"]), "name": str(top["name"]), "difference": float(top["difference"]),
                                     "p_value": float(top["p_value"])}  # fmt: skip
        with atomic_path(stage.path("registration_qc.csv")) as tmp:
            qc.to_csv(tmp, index=False, float_format="%.6g")
        if figure:
            from hcp_cam.group.figures import group_overview

            flagged = dict(zip(qc["key"], qc["flagged"], strict=True))
            group_overview(
                tmpl, tmpl_img.affine,
                [(f"CAM {cohort.cam_class}: {last} - {first}", tests["cam"][""], tests["cam"]["_p"]),
                 (f"FA: {last} - {first}", tests["fa"][""], tests["fa"]["_p"])],
                [warped[m.key][0] for m in cohort.maps], [m.key for m in cohort.maps],
                [bool(flagged[m.key]) for m in cohort.maps], stage.path("group_overview.png"),
                title=f"{len(subjects)} subjects, {permutations} permutations; yellow: FWE p < 0.05",
            )  # fmt: skip
        summary.update(
            {
                "runs": [str(r) for r in cohort.runs], "labels": labels, "groups": cohort.groups,
                "difference": f"{last} minus {first}", "cam_class": cohort.cam_class, "cam_scale": cam_scale,
                "cam_units": CAM_UNITS[cam_scale],
                "subjects": {g: [s for s in subjects if groups[s] == g] for g in labels},
                "left_out": cohort.left_out, "shuffle_groups": shuffle_groups, "template": tmpl_record,
                "registration": settings.to_dict(), "permutations": int(permutations), "seed": int(seed),
                "alpha": alpha, "min_coverage": min_coverage, "qc_threshold": qc_threshold,
                "qc_flagged": qc.loc[qc["flagged"], "key"].tolist(), "atlas": atlas.source if atlas else None,
                "atlas_resampled": bool(atlas.resampled) if atlas else None,
                "values": "NaN where unknown (CAM on no computed slice, outside a subject's grid) or untested",
            }
        )  # fmt: skip
        summary["outputs"] = stage.files + ["group.json"]
        write_json_atomic(summary, stage.path("group.json"))
        stage.commit(previous_outputs(out))
    except BaseException:
        stage.discard()
        raise
    return GroupResult(out, cache_files + summary["outputs"], qc, regions, clusters, summary)


def _voxel_record(at: tuple, maps: dict, affine: np.ndarray, atlas: Atlas | None) -> dict[str, Any]:
    mm = affine[:3, :3] @ np.asarray(at) + affine[:3, 3]
    label, name = atlas.name_at(at) if atlas is not None else (None, None)
    return {
        "voxel": [int(v) for v in at], "mm": mm.round(3).tolist(), "difference": float(maps[""][at]),
        "t": float(maps["_t"][at]), "p_fwe": float(maps["_p"][at]), "label": label, "label_name": name,
    }  # fmt: skip


class _quiet:
    """Silence numpy's "Mean of empty slice" warnings (all-NaN voxels are expected outside the data)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
