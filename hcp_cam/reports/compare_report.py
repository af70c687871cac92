"""The page of several runs (``hcp-cam report RUN_A RUN_B ... --out FILE`` or ``hcp-cam compare
... --format html``): the comparison table of :mod:`hcp_cam.reports.compare` (one row per network,
mean ± std over folds, majority baseline beside), one row per run, each run's warnings and curves."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from hcp_cam.reports.compare import SUMMARY_COLUMNS, compare_runs, read_run
from hcp_cam.reports.html import Section, check_output_path, figure, notes, render_page, table, write_page
from hcp_cam.reports.run_folder import read_json
from hcp_cam.reports.sections import provenance_section
from hcp_cam.training.metrics import constant_prediction_warning

__all__ = ["write_compare_report"]


def _mean_std(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f}" if not math.isfinite(std) else f"{mean:.3f} ± {std:.3f}"


def write_compare_report(
    run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, command: list[str] | None = None
) -> Path:
    """Write the comparison page of ``run_dirs`` to ``out`` and return its path.

    Raises:
        InputError: no run, a run given twice, a run lacking ``config.json``, ``metrics/history.csv``
            or ``metrics/test_metrics.json`` (as :func:`~hcp_cam.reports.compare.compare_runs`), or
            ``out`` is a folder or not writable.
    """
    path = check_output_path(out)
    summary = compare_runs(run_dirs)
    records = [read_run(d) for d in run_dirs]
    headers = ["network", *[h for _, _, h in SUMMARY_COLUMNS], "folds", "test subjects"]
    rows = [
        [r["arch"], *[_mean_std(r[f"{s}_mean"], r[f"{s}_std"]) for s, _, _ in SUMMARY_COLUMNS], r["n_folds"], int(r["n_test_subjects"])]
        for _, r in summary.iterrows()
    ]  # fmt: skip
    body = table(headers, rows, caption="One row per network; mean ± sample std over its folds")
    body += (
        '<p class="note">Compare the subject-level accuracy with the majority baseline beside it; with few test '
        "subjects per fold the spread over folds is the honest error bar.</p>"
    )
    per_run = [
        [r["run_dir"], r["arch"], r["fold"], r["best_val_accuracy"], r["subject_accuracy"], r["roc_auc"],
         r["majority_baseline"], r["n_subjects"], r["pointing_game"]]
        for r in records
    ]  # fmt: skip
    run_headers = [
        "run",
        "network",
        "fold",
        "best val. accuracy",
        "subject accuracy",
        "subject AUC",
        "majority baseline",
    ]
    body += table([*run_headers, "test subjects", "CAM pointing game"], per_run, caption="Every run")
    sections = [Section("comparison", "Networks compared", body)]
    configs = {}
    for i, d in enumerate(run_dirs):
        d = Path(d)
        metrics = read_json(d / "metrics" / "test_metrics.json")
        configs[f"{d} config.json"] = read_json(d / "config.json")
        warn = [w for w in [constant_prediction_warning(metrics)] if w]
        part = notes(warn) or '<p class="ok">No warning.</p>'
        curves = d / "figures" / "curves.png"
        if curves.is_file():
            part += figure(curves, f"{d.name}: training and validation curves")
        sections.append(Section(f"run-{i}", f"{records[i]['arch']} · {d.name}", f"<p>{d}</p>{part}"))
    sections.append(provenance_section([Path(d) for d in run_dirs], configs, command))
    text = render_page("hcp-cam: runs compared", f"{len(run_dirs)} runs", sections)
    return write_page(text, path)
