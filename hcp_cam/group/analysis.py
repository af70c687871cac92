"""``run_group_analysis``: runs -> common space -> group maps, permutation tests, tables, figure.

Outputs under ``OUT`` (NIfTIs on the template's grid and affine, sform and qform set; NaN where a
value is unknown or was not tested)::

    template.nii.gz, template.json            the template (given, or built from the cohort)
    transforms/<key>_affine.tfm, <key>.json   each acquisition's registration (cache, reused)
    subjects/<key>_fa.nii.gz, _cam.nii.gz     every acquisition's FA and CAM in template space
    group_<group>_mean_cam.nii.gz, _mean_fa.nii.gz
    group_difference_cam.nii.gz, _t.nii.gz, _p.nii.gz   last group minus first; t; FWE p
    group_difference_fa.nii.gz, _t.nii.gz, _p.nii.gz
    clusters.csv, regions.csv (with an atlas), registration_qc.csv, group_overview.png, group.json

Here: the checks, the template and the registrations (cached under ``transforms/``); the maps,
tests and tables are written by :func:`hcp_cam.group.outputs.write_outputs`, all or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.group.atlas import Atlas, load_atlas
from hcp_cam.group.cam_scale import check_cam_scale
from hcp_cam.group.images import check_rigid_affine, file_digest, to_sitk
from hcp_cam.group.outputs import GroupResult, write_outputs
from hcp_cam.group.registration import RegistrationSettings, cached_registration
from hcp_cam.group.runs import Cohort, collect_cohort
from hcp_cam.group.template import build_template, load_template, template_mask
from hcp_cam.group.warping import resample
from hcp_cam.io import load_nifti, save_nifti_like, write_json_atomic

__all__ = ["GroupResult", "array_digest", "check_inputs", "parse_shard", "run_group_analysis"]

logger = logging.getLogger(__name__)


def parse_shard(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"i/n"`` (or ``(i, n)``) -> ``(i, n)`` with ``0 <= i < n``; ``None`` stays ``None``.

    Raises:
        ConfigError: anything else.
    """
    if text is None:
        return None
    try:
        i, n = (int(v) for v in (text.split("/") if isinstance(text, str) else text))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from e
    if not 0 <= i < n:
        raise ConfigError(f"shard i/n needs 0 <= i < n, got {i}/{n}")
    return i, n


def array_digest(data: np.ndarray, affine: np.ndarray) -> str:
    """SHA-256 of an image's float32 voxels and its affine: what a cached transform was made against."""
    h = hashlib.sha256(np.ascontiguousarray(data, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(affine, dtype=np.float64).tobytes())
    return h.hexdigest()


def _check_options(permutations: int, alpha: float, qc_threshold: float, min_coverage: float) -> None:
    if int(permutations) < 1:
        raise ConfigError(f"permutations must be >= 1, got {permutations}")
    if not 0 < float(alpha) < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if not -1 <= float(qc_threshold) <= 1:
        raise ConfigError(f"qc_threshold is a correlation, in [-1, 1]; got {qc_threshold}")
    if not 0 < float(min_coverage) <= 1:
        raise ConfigError(f"min_coverage must be in (0, 1], got {min_coverage}")


def _subject_groups(cohort: Cohort, shuffle: int | None) -> dict[str, str]:
    groups = cohort.group_of()
    unknown = sorted({g for g in groups.values() if g not in cohort.labels})
    if unknown:
        raise InputError(f"groups {unknown} are not in the runs' grouping rule {cohort.labels}")
    if shuffle is not None:  # a negative control: the same maps, group labels permuted across subjects
        subjects = sorted(groups)
        shuffled = np.random.default_rng(int(shuffle)).permutation([groups[s] for s in subjects])
        groups = dict(zip(subjects, (str(g) for g in shuffled), strict=True))
        logger.warning("group labels shuffled across subjects (seed %d): a negative control", shuffle)
    counts = {g: sum(v == g for v in groups.values()) for g in cohort.labels}
    few = {g: n for g, n in counts.items() if n < 2}
    if few:
        what = ", ".join(f"{g!r} has {n}" for g, n in few.items())
        raise InputError(
            f"a group comparison needs at least 2 subjects per group: {what} subject(s) held out in the runs "
            f"given ({', '.join(str(r) for r in cohort.runs)}); give every fold of the cross-validation"
        )
    return groups


def _template(
    out: Path,
    template: str | os.PathLike | None,
    cohort: Cohort,
    settings: RegistrationSettings,
    iterations: int,
    need_existing: bool,
    progress: bool,
) -> tuple[nib.Nifti1Image, dict]:
    """The template image and its record; a study template is built once and reused."""
    path, record_path = out / "template.nii.gz", out / "template.json"
    if template is not None:
        img = load_template(template)
        record = {"source": str(template), "sha256": array_digest(np.asarray(img.dataobj), img.affine)}
        return img, record
    firsts = {}
    for m in cohort.maps:
        firsts.setdefault(m.subject, m)
    want = {
        "source": "study template built from the cohort's FA maps",
        "fa_sha256": {s: file_digest(m.fa) for s, m in sorted(firsts.items())},
        "settings": settings.to_dict(),
        "iterations": int(iterations),
    }
    if path.is_file() and record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if need_existing or all(record.get(k) == v for k, v in want.items()):
            img = load_template(path)
            if array_digest(np.asarray(img.dataobj), img.affine) == record.get("sha256"):
                return img, record
    if need_existing:
        raise ConfigError(
            f"--shard needs a template: give --template, or build the study template first with "
            f"`hcp-cam group RUN... --out {out} --template-only` ({path} not found)"
        )
    fa_images = [load_nifti(m.fa, ndim=3) for _, m in sorted(firsts.items())]
    img, info = build_template(fa_images, settings, iterations=iterations, progress=progress)
    record = {**want, **info, "sha256": array_digest(np.asarray(img.dataobj), img.affine)}
    save_nifti_like(np.asarray(img.dataobj), img, path, "hcp-cam study FA template", np.float32)
    write_json_atomic(record, record_path)
    return load_template(path), record


def check_inputs(
    out_dir: str | os.PathLike,
    template: str | os.PathLike | None = None,
    atlas: str | os.PathLike | None = None,
    atlas_labels: str | os.PathLike | None = None,
    permutations: int = 1000,
    seed: int = 0,
    shard: str | Sequence[int] | None = None,
    deformable: str | None = None,
    metric: str = "correlation",
    qc_threshold: float = 0.8,
    alpha: float = 0.05,
    min_coverage: float = 0.5,
    sampling: float = 1.0,
    cam_scale: str = "zscore",
) -> tuple[RegistrationSettings, tuple[int, int] | None, nib.Nifti1Image | None, Atlas | None]:
    """Everything :func:`run_group_analysis` checks before it reads the runs (same arguments).

    Returns:
        ``(settings, shard, template image or None, atlas or None)``.

    Raises:
        InputError, ConfigError: a bad option, template or atlas; nothing is written.
    """
    _check_options(permutations, alpha, qc_threshold, min_coverage)
    check_cam_scale(cam_scale)
    shard_t = parse_shard(shard)
    settings = RegistrationSettings(metric=metric, deformable=deformable, sampling=sampling, seed=int(seed))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("the output exists and is not a folder", out)
    if (atlas is None) != (atlas_labels is None):
        raise ConfigError("--atlas and --atlas-labels go together (the label image and its index,name table)")
    if atlas is not None and template is None:
        raise ConfigError("--atlas needs --template: the atlas must be in the template's space")
    if shard_t is not None and template is None and not (out / "template.nii.gz").is_file():
        raise ConfigError(
            f"--shard needs a template: give --template, or build the study template first with "
            f"`hcp-cam group RUN... --out {out} --template-only` ({out / 'template.nii.gz'} not found)"
        )
    tmpl_given = load_template(template) if template is not None else None
    atlas_obj = load_atlas(atlas, atlas_labels, tmpl_given) if atlas is not None else None
    return settings, shard_t, tmpl_given, atlas_obj


def run_group_analysis(
    run_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    template: str | os.PathLike | None = None,
    atlas: str | os.PathLike | None = None,
    atlas_labels: str | os.PathLike | None = None,
    permutations: int = 1000,
    seed: int = 0,
    shard: str | Sequence[int] | None = None,
    deformable: str | None = None,
    metric: str = "correlation",
    template_iterations: int = 2,
    qc_threshold: float = 0.8,
    alpha: float = 0.05,
    min_coverage: float = 0.5,
    shuffle_groups: int | None = None,
    template_only: bool = False,
    sampling: float = 1.0,
    cam_scale: str = "zscore",
    figure: bool = True,
    progress: bool = True,
) -> GroupResult:
    """Group CAM and FA maps of bundle runs in a common space.

    Args:
        run_dirs: bundle run folders (the k folds of a cross-validation); each subject's maps come
            from the run where it was a test subject.
        out_dir: the output folder (see the module docstring for its files).
        template: an FA-like 3D NIfTI (e.g. FMRIB58_FA); ``None`` builds a study template.
        atlas, atlas_labels: a label NIfTI in the template's space and its ``index,name`` table (or
            FSL XML): ``regions.csv`` and the labels at cluster peaks. Needs ``template``.
        permutations: permutations of the max-statistic tests (voxels and labels).
        seed: their seed (and the registration's sampling seed).
        shard: ``"i/n"``: register only every n-th acquisition from the i-th (cluster array jobs),
            write their transforms and stop; a final call without ``shard`` reuses them. Needs a
            template (given, or built before with ``template_only``).
        deformable: ``None``, ``"bspline"`` or ``"demons"`` after the affine stage.
        metric: ``"correlation"`` or ``"mattes"``.
        template_iterations: register-and-average rounds of a study template.
        qc_threshold: registrations whose warped FA correlates less with the template are flagged.
        alpha: FWE threshold of the clusters.
        min_coverage: a voxel is tested where at least this share of each compared group (and at
            least 2 subjects) has a value.
        shuffle_groups: permute the group labels across subjects with this seed (negative control).
        template_only: build (or check) the template and stop.
        sampling: share of voxels the registration metric samples.
        figure: write ``group_overview.png``.
        progress: tqdm bars.

    Returns:
        a :class:`GroupResult`.

    Raises:
        InputError, ConfigError: bad runs, template, atlas or options; raised before any output.
    """
    out = Path(out_dir)
    settings, shard_t, _, atlas_obj = check_inputs(
        out, template, atlas, atlas_labels, permutations, seed, shard, deformable, metric, qc_threshold,
        alpha, min_coverage, sampling, cam_scale,
    )  # fmt: skip
    cohort = collect_cohort(run_dirs)
    groups = _subject_groups(cohort, shuffle_groups)

    # checked: from here on, work and outputs
    out.mkdir(parents=True, exist_ok=True)
    tmpl_img, tmpl_record = _template(
        out,
        template,
        cohort,
        settings,
        template_iterations,
        need_existing=shard_t is not None,
        progress=progress,
    )
    tmpl = np.asarray(tmpl_img.dataobj, dtype=np.float32)
    tdigest = array_digest(tmpl, tmpl_img.affine)
    if template is not None:  # a copy beside the maps, for viewers and reports
        save_nifti_like(tmpl, tmpl_img, out / "template.nii.gz", "hcp-cam group template", np.float32)
        write_json_atomic({**tmpl_record, "sha256": tdigest}, out / "template.json")
    cache_files = ["template.nii.gz", "template.json"]
    if template_only:
        return GroupResult(out, cache_files, pd.DataFrame(), summary={"template": tmpl_record})
    fixed = to_sitk(tmpl, tmpl_img.affine)
    brain = template_mask(tmpl)
    todo = list(cohort.maps)
    if shard_t is not None:
        todo = todo[shard_t[0] :: shard_t[1]]
    qc_rows, warped = [], {}
    for m in tqdm(todo, desc="registration", unit="acq", disable=not progress):
        fa_img = load_nifti(m.fa, ndim=3)
        check_rigid_affine(fa_img.affine, m.fa)
        fa = np.asarray(fa_img.dataobj, dtype=np.float32)
        reg, reused = cached_registration(
            fixed, to_sitk(fa, fa_img.affine, m.fa), settings, out / "transforms", m.key,
            {"template_sha256": tdigest, "fa_sha256": file_digest(m.fa)},
            extra={"subject": m.subject, "acquisition": m.acquisition, "fa": str(m.fa), "cam": str(m.cam),
                   "run": str(m.run_dir)},
        )  # fmt: skip
        cache_files += [f"transforms/{m.key}.json", f"transforms/{m.key}_affine.tfm"]
        if shard_t is not None:
            qc_rows.append({"key": m.key, "subject": m.subject, "reused": reused})
            continue
        w_fa = resample(fa, fa_img.affine, fixed, reg.transform, "linear")
        cam_img = nib.load(str(m.cam))
        if tuple(cam_img.shape) != fa.shape:
            raise InputError(
                f"CAM grid {tuple(cam_img.shape)} differs from its FA grid {fa.shape} ({m.fa})", m.cam
            )
        w_cam = resample(
            np.asarray(cam_img.dataobj, dtype=np.float32), cam_img.affine, fixed, reg.transform, "cam"
        )
        ok = brain & np.isfinite(w_fa)
        corr = float(np.corrcoef(w_fa[ok], tmpl[ok])[0, 1]) if ok.sum() > 2 else float("nan")
        warped[m.key] = (w_fa, w_cam)
        qc_rows.append(
            {
                "key": m.key, "subject": m.subject, "acquisition": m.acquisition, "group": groups[m.subject],
                "run": str(m.run_dir), "correlation": corr, "flagged": not corr >= qc_threshold,
                "cam_known_voxels": int(np.isfinite(w_cam).sum()), "transform_reused": reused,
                "metric_value": reg.metric_value,
            }
        )  # fmt: skip
    qc = pd.DataFrame(qc_rows)
    if shard_t is not None:
        logger.info(
            "shard %d/%d: %d registrations (%d reused)",
            *shard_t,
            len(qc),
            int(qc["reused"].sum()) if len(qc) else 0,
        )
        return GroupResult(out, cache_files, qc, summary={"shard": list(shard_t)})
    for r in qc[qc["flagged"]].itertuples():
        logger.warning(
            "%s: warped FA correlates %.3f with the template (below %.2f): check its registration", r.key,
            r.correlation, qc_threshold,
        )  # fmt: skip
    return write_outputs(
        out, cohort, groups, tmpl_img, tmpl_record, atlas_obj, warped, qc, settings, permutations, seed,
        alpha, min_coverage, qc_threshold, shuffle_groups, figure, cache_files, progress, cam_scale,
    )  # fmt: skip
