"""The report of one bundle run: ``RUN/report.html``, one self-contained page.

Sections: summary (data set, layout, subjects per group and split, network, settings, warnings,
missing files), training curves, test metrics at subject and slice level beside the majority
baseline, ROC / PR / confusion matrix, the test subjects (prediction, probability, CAM box,
localization against the ground truth when known, the figure), the interactive viewer (FA with the
CAM, its box and the ground-truth region per test subject), the randomisation check, the maps'
faithfulness and data randomisation (when the inference wrote them), group maps when the run folder
holds a group output (``RUN/group/``), and provenance.

From Python, at the end of the bundle's ``evaluating`` or ``inference``::

    from hcp_cam.reports import write_run_report
    write_run_report(output_dir)          # -> Path("<output_dir>/report.html")
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hcp_cam.reports.html import (
    Section,
    check_output_path,
    figure,
    frame_table,
    key_values,
    notes,
    render_page,
    write_page,
)
from hcp_cam.reports.html import table as html_table
from hcp_cam.reports.run_folder import RunFolder, read_csv, read_run_folder
from hcp_cam.reports.run_report_tasks import (
    _num,
    calibrated_rows,
    is_regression_run,
    prediction_columns,
    regression_metrics_body,
    regression_summary,
    regression_warnings,
)
from hcp_cam.reports.run_scenes import run_scenes
from hcp_cam.reports.sections import provenance_section
from hcp_cam.reports.viewer import viewer_html, viewer_scripts
from hcp_cam.training.metrics import constant_prediction_warning

__all__ = ["DEFAULT_NAME", "run_report_html", "write_run_report"]

logger = logging.getLogger(__name__)

DEFAULT_NAME = "report.html"
# (label, key at subject level, key at slice level)
METRIC_ROWS = (
    ("Accuracy", "subject_accuracy", "slice_accuracy"),
    ("Majority-class baseline", "majority_baseline", "slice_majority_baseline"),
    ("ROC AUC", "roc_auc", "slice_roc_auc"),
    ("Balanced accuracy", "balanced_accuracy", None),
    ("Precision", "precision", None),
    ("Recall", "recall", None),
    ("F1", "f1", None),
    ("Spread of P(class 1)", "prediction_spread", None),
    ("Number", "n_subjects", "n_slices"),
)


def _layout(run: RunFolder) -> str:
    """The DWI path pattern of the data set, from the datalist (``<subject>/T1w/Diffusion/data.nii.gz``)."""
    for split in ("training", "validation", "test"):
        for e in (run.datalist or {}).get(split) or []:
            dwi, subject = str(e.get("dwi", "")), str(e.get("subject", ""))
            if dwi:
                return dwi.replace(subject, "<subject>") if subject else dwi
    return "unknown (no datalist.json)"


def _warnings(run: RunFolder) -> list[str]:
    out = []
    m = run.metrics or {}
    if is_regression_run(run.config, m):
        out += regression_warnings(m) if m else []
        m = {}  # the classification checks below do not apply
    w = constant_prediction_warning(m) if m else None
    if w:
        out.append(w)
    acc, base = _num(m.get("subject_accuracy")), _num(m.get("majority_baseline"))
    if math.isfinite(acc) and math.isfinite(base) and acc <= base:
        out.append(f"subject accuracy {acc:.3f} is no better than the majority-class baseline {base:.3f}")
    n = _num(m.get("n_subjects"))
    if math.isfinite(n) and 0 < n < 10:
        out.append(
            f"{int(n)} test subjects: subject accuracy moves in steps of {1 / n:.2f}; "
            "report the spread over folds (hcp-cam compare)"
        )
    r = run.randomisation
    if r is not None and r.get("passed") is False:
        out.append(f"randomisation check failed: {r.get('interpretation', '')}")
    return out


def _subject_counts(run: RunFolder) -> str:
    labels = run.labels
    rows = []
    for split in ("training", "validation", "test"):
        entries = (run.datalist or {}).get(split) or []
        per = {}
        for e in entries:
            per.setdefault(str(e.get("group")), set()).add(str(e.get("subject")))
        if entries:
            groups = labels or sorted(per)
            rows.append(
                [split, *[len(per.get(g, ())) for g in groups], len({str(e.get("subject")) for e in entries})]
            )
    if not rows:
        return '<p class="note">No datalist.json: subjects per split unknown.</p>'
    return html_table(["split", *(labels or []), "subjects"], rows, caption="Subjects per group and split")


def summary_section(run: RunFolder) -> Section:
    c, m, d = run.config or {}, run.metrics or {}, run.datalist or {}
    groups = d.get("groups") if isinstance(d.get("groups"), dict) else {}
    rule = "; ".join(f"{g}: age {lo:g}–{hi:g}" for g, (lo, hi) in groups.items()) if groups else "n/a"
    width = c.get("network_width")
    pairs = [
        ("Run folder", str(run.path)),
        ("Data set", f"{c.get('dataset_dir', 'n/a')} ({d.get('name', 'n/a')})"),
        ("Layout", _layout(run)),
        ("Age groups", rule),
        ("Network", f"{c.get('arch', 'n/a')} {c.get('spatial_dims', '?')}D, width {width}, batch norm {c.get('batch_norm')}"),
        ("Input", f"{c.get('image_size', 'n/a')} px; {c.get('slice_selection', 'n/a')} {c.get('slices_per_axis', '?')} slices per axis"),
        ("Training", f"{c.get('epochs', '?')} epochs, batch {c.get('batch_size', '?')}, learning rate {c.get('learning_rate', '?')}, pipeline {c.get('data_pipeline', '?')}"),
        ("Split", f"by subject; seed {c.get('seed', '?')}, fold {c.get('fold', '?')} of {c.get('num_folds', '?')}, validation {c.get('val_fraction', '?')}, test {c.get('test_fraction', '?')}"),
    ]  # fmt: skip
    if is_regression_run(c, m):
        pairs[3] = ("Target", f"age in years (regression); age strata of the split: {rule}")
        if m:
            pairs.append(("Test result", regression_summary(m)))
    elif m:
        pairs.append(
            ("Test result", f"subject accuracy {_num(m.get('subject_accuracy')):.3f} "
             f"(majority baseline {_num(m.get('majority_baseline')):.3f}), subject ROC AUC {_num(m.get('roc_auc')):.3f}, "
             f"{m.get('n_subjects', '?')} subjects")
        )  # fmt: skip
    body = key_values(pairs) + _subject_counts(run)
    warn = _warnings(run)
    body += "<h3>Warnings</h3>" + (notes(warn) or '<p class="ok">None.</p>')
    if run.missing:
        body += "<h3>Not in the run folder yet</h3>" + notes(run.missing, cls="note")
    return Section("summary", "Summary", body)


def training_section(run: RunFolder) -> Section:
    body = ""
    curves = run.file("figures/curves.png")
    if curves.is_file():
        body += figure(curves, "Training and validation loss and accuracy per epoch (slice level)")
    h = run.history
    if h is not None and len(h):
        pairs: list[tuple[str, Any]] = [("Epochs run", int(h["epoch"].max()) if "epoch" in h else len(h))]
        if "val_accuracy" in h and h["val_accuracy"].notna().any():
            best = h.loc[h["val_accuracy"].idxmax()]
            pairs.append(
                (
                    "Best validation accuracy (slices)",
                    f"{best['val_accuracy']:.3f} at epoch {int(best['epoch'])}",
                )
            )
        for col in ("train_loss", "val_loss", "val_subject_accuracy"):
            if col in h:
                pairs.append((f"Last {col}", _num(h[col].iloc[-1])))
        body += key_values(pairs)
        body += f"<details><summary>history.csv ({len(h)} epochs)</summary><div class='wide'>{frame_table(h)}</div></details>"
    if not body:
        body = '<p class="note">No training history (metrics/history.csv is written by the bundle\'s training).</p>'
    return Section("training", "Training", body)


def _slice_baseline(run: RunFolder) -> float:
    path = run.file("metrics/test_slice_predictions.csv")
    if not path.is_file():
        return math.nan
    labels = read_csv(path).get("label")
    return (
        float(labels.value_counts(normalize=True).max()) if labels is not None and len(labels) else math.nan
    )


def metrics_section(run: RunFolder) -> Section:
    m = dict(run.metrics or {})
    if not m:
        return Section(
            "test-metrics", "Test metrics",
            '<p class="note">No metrics/test_metrics.json: run the bundle\'s evaluating to score the test subjects.</p>',
        )  # fmt: skip
    if is_regression_run(run.config, m):
        return Section(
            "test-metrics", "Test metrics", regression_metrics_body(m, lambda n: run.file(f"figures/{n}"))
        )
    m["slice_majority_baseline"] = _slice_baseline(run)
    rows = [[label, _cell(m, s, label), _cell(m, t, label)] for label, s, t in METRIC_ROWS]
    rows[1:1] = calibrated_rows(m)  # beside the uncalibrated accuracy
    body = html_table(
        ["metric", "subject level", "slice level"],
        rows,
        caption="Held-out test set (metrics/test_metrics.json)",
    )
    body += (
        '<p class="note">Subject level: each subject\'s slice probabilities averaged, one decision per subject '
        "(the number to report). Slice level: every slice counted alone. The majority-class baseline is the "
        "accuracy of always answering the most frequent class.</p>"
    )
    figs = [(n, c) for n, c in (("test_confusion.png", "Confusion matrix (subjects)"), ("test_roc.png", "ROC curve (subjects)"), ("test_pr.png", "Precision-recall curve (subjects)")) if run.file(f"figures/{n}").is_file()]  # fmt: skip
    body += "".join(figure(run.file(f"figures/{n}"), c, size="small") for n, c in figs)
    return Section("test-metrics", "Test metrics", body)


def _cell(m: dict, key: str | None, label: str) -> Any:
    if key is None:
        return ""
    v = _num(m.get(key))
    return int(v) if label == "Number" and math.isfinite(v) else v


def _triple(text: Any) -> str:
    """``"[11, 12, 11]"`` (a list as written to CSV) as ``11, 12, 11``."""
    return str(text).strip("[]") if isinstance(text, str) else "n/a"


def _box_text(row: pd.Series) -> str:
    if str(row.get("box.empty", "True")) == "False":
        return f"{_triple(row.get('box.min_index'))} to {_triple(row.get('box.max_index'))}"
    return "empty"


# (column of cam/summary.csv without "localization.", header)
LOCALIZATION_COLUMNS = (
    ("pointing_game", "peak in region"),
    ("peak_distance", "peak to region (mm)"),
    ("energy_pointing_game", "CAM energy in region"),
    ("energy_baseline", "flat-map energy"),
    ("dice", "Dice (box threshold)"),
)


def _loc_value(row: pd.Series, key: str) -> Any:
    v = row.get(f"localization.{key}")
    if key == "pointing_game":
        return {"True": "yes", "False": "no", "1.0": "yes", "0.0": "no"}.get(str(v), "n/a")
    return _num(v)


def subjects_section(run: RunFolder) -> Section:
    body = ""
    subjects = run.test_subjects()
    p = run.predictions
    if p is not None:
        cols, headers = prediction_columns(p)
        body += html_table(
            headers,
            [[r.get(c) for c in cols] for _, r in p.iterrows()],
            caption="Subject-level predictions (metrics/test_subject_predictions.csv)",
        )
    elif subjects:
        body += f'<p class="note">No predictions yet (evaluating). Test subjects: {", ".join(subjects)}.</p>'
    cam = run.cam
    if cam is not None and len(cam):
        rows = cam[cam["split"] == "test"] if "split" in cam else cam
        loc = [(k, h) for k, h in LOCALIZATION_COLUMNS if f"localization.{k}" in rows]
        headers = [
            "subject",
            "acquisition",
            "CAM of class",
            "predicted (CAM pass)",
            "peak (mm)",
            "box (voxels)",
        ]
        headers += [h for _, h in loc]
        table_rows = [
            [r["subject"], r.get("acquisition"), r.get("cam_class"), r.get("predicted", r.get("predicted_age")), _triple(r.get("peak_mm")), _box_text(r)]
            + [_loc_value(r, k) for k, _ in loc]
            for _, r in rows.iterrows()
        ]  # fmt: skip
        body += html_table(headers, table_rows, caption="CAM per acquisition (cam/summary.csv)")
        if loc:
            body += (
                '<p class="note">Against the ground-truth region (cam/localization.csv): whether the CAM peak lies in it, '
                "the distance from the peak to it, the share of the positive CAM mass inside it beside what a flat map "
                "gets (the region's share of the known voxels), and the Dice of the thresholded CAM with it.</p>"
            )
        figs = []
        for _, r in rows.iterrows():
            png = run.file(f"cam/{r['subject']}/{r.get('acquisition', 'dwi')}_overlay.png")
            if png.is_file():
                figs.append(
                    figure(
                        png,
                        f"{r['subject']} {r.get('acquisition', '')}: CAM {r.get('cam_class', '')} over FA, box in green",
                    )
                )
        body += "".join(figs)
    else:
        body += '<p class="note">No CAM volumes (cam/summary.csv is written by the bundle\'s inference).</p>'
    return Section("subjects", "Test subjects", body or '<p class="note">No test subjects found.</p>')


def randomisation_section(run: RunFolder) -> Section:
    r = run.randomisation
    if r is None:
        return Section(
            "sanity",
            "Randomisation check",
            '<p class="note">No cam/randomisation_check.json (inference).</p>',
        )
    sp = r.get("spearman") or {}
    pairs = [
        ("Acquisition", r.get("acquisition")),
        ("Method", r.get("method")),
        ("Inputs", f"{r.get('n_inputs')} {r.get('input', '')}"),
        *[(f"Spearman ({k})", _num(v)) for k, v in sp.items()],
        ("Pass threshold", _num(r.get("threshold"))),
        ("Passed", r.get("passed")),
        ("Reading", r.get("interpretation")),
        ("Reference", r.get("reference")),
    ]
    body = (
        '<p class="note">Maps of the trained network against those of a copy with re-initialised weights: a low '
        "correlation is what a network that learned something gives.</p>" + key_values(pairs)
    )
    return Section("sanity", "Randomisation check", body)


def run_report_html(
    run_dir: str | os.PathLike, command: list[str] | None = None, viewer_subjects: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The page of one run and a few numbers about it (``n_scenes``, ``volume_bytes``, ``missing``)."""
    run = read_run_folder(run_dir)
    scenes, scene_notes = run_scenes(run, limit=viewer_subjects)
    viewer_body = notes(scene_notes, cls="note") + viewer_html(scenes)
    sections = [
        summary_section(run),
        training_section(run),
        metrics_section(run),
        subjects_section(run),
        Section("viewer", "Viewer: CAM over FA", viewer_body),
        randomisation_section(run),
    ]
    # imported here: it pulls in hcp_cam.cam (torch), which the CLI's parser must not load
    from hcp_cam.reports.explanation_sections import faithfulness_section

    faithfulness = faithfulness_section(run.path)
    if faithfulness is not None:
        sections.append(faithfulness)
    group_dir = run.path / "group"
    g_scenes: list = []
    if group_dir.is_dir():
        from hcp_cam.reports.group_report import group_sections, is_group_folder

        if is_group_folder(group_dir):
            g_sections, g_scenes = group_sections(group_dir, element_id="nv-group")
            sections += g_sections
    sections.append(
        provenance_section(run.path, {"config.json (recorded run configuration)": run.config}, command)
    )
    title = f"hcp-cam run: {(run.config or {}).get('arch', run.path.name)}"
    subtitle = f"{run.path} · {len(run.test_subjects())} test subjects"
    scripts = viewer_scripts() if scenes or g_scenes else []
    by_layer: dict[str, int] = {}
    for s in scenes:
        for v in s.volumes:
            key = v.label.split(" ")[0] if v.role == "overlay" else v.label
            by_layer[key] = by_layer.get(key, 0) + v.nbytes
    stats = {
        "n_scenes": len(scenes),
        "volume_bytes": sum(s.nbytes for s in scenes),
        "volume_bytes_by_layer": by_layer,
        "missing": list(run.missing),
    }
    return render_page(title, subtitle, sections, scripts), stats


def write_run_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    command: list[str] | None = None,
    viewer_subjects: int | None = None,
) -> Path:
    """Write the run's report (default ``<run_dir>/report.html``) and return its path.

    Missing inputs are listed on the page; nothing is written when an input is unreadable or the
    output cannot be written (checked before the page is built).

    Args:
        run_dir: the bundle's ``output_dir``.
        out: the page to write.
        command: what to show as the command under provenance (default: this process's).
        viewer_subjects: embed the volumes of the first N test acquisitions only (``None``: all;
            0: no viewer). Each costs ~60 kB at the demo size and ~2 MB at HCP size.

    Raises:
        InputError: ``run_dir`` is not a run folder, an input file is unreadable, or ``out`` is a
            folder or not writable.
    """
    path = Path(out) if out is not None else Path(run_dir) / DEFAULT_NAME
    if not Path(run_dir).is_dir():
        read_run_folder(run_dir)  # raises the run folder's error before the output's
    check_output_path(path)
    text, stats = run_report_html(run_dir, command, viewer_subjects)
    write_page(text, path)
    logger.info("report: %s (%.1f MB, %d viewer scenes)", path, len(text.encode()) / 1e6, stats["n_scenes"])
    return path
