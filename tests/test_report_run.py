"""`hcp-cam report RUN`: what the page holds, runs at every stage, and bad input (no browser here)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bundle_helpers import tree_snapshot
from report_helpers import external_references, page_scenes

from hcp_cam.cli import main
from hcp_cam.reports import write_run_report
from hcp_cam.reports.embed import decode_nifti

TRAINING_FILES = ("config.json", "datalist.json", "metrics/history.csv", "figures/curves.png")


@pytest.fixture(scope="module")
def page(completed_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run.html"
    assert write_run_report(completed_run, out) == out
    return out.read_text(encoding="utf-8")


def _copy(run, dest, files=None, skip=()):
    """A copy of a run folder (``files`` only, or all but ``skip``): a run at an earlier stage."""
    if files is None:
        # checkpoints and TensorBoard events are not report inputs: not copied (the copy is quicker)
        shutil.copytree(
            run, dest, ignore=shutil.ignore_patterns(*skip, "report.html", "checkpoints", "tensorboard")
        )
    else:
        for f in files:
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run / f, dest / f)
    return dest


def test_page_sections_and_numbers(page, completed_run):
    for section in ("summary", "training", "test-metrics", "subjects", "viewer", "sanity", "provenance"):
        assert f'<section id="{section}">' in page
        assert f'href="#{section}"' in page  # in the table of contents
    metrics = json.loads((completed_run / "metrics" / "test_metrics.json").read_text())
    assert f'<td class="num">{metrics["subject_accuracy"]:.3f}</td>' in page
    assert f'<td class="num">{metrics["majority_baseline"]:.3f}</td>' in page
    assert '<td>Number</td><td class="num">' + str(metrics["n_subjects"]) in page
    check = json.loads((completed_run / "cam" / "randomisation_check.json").read_text())
    assert f"{check['spearman']['all_layers']:.3f}" in page
    config = json.loads((completed_run / "config.json").read_text())
    assert f"{config['arch']} {config['spatial_dims']}D" in page
    assert "T1w/Diffusion/data.nii.gz" in page  # the layout, from the datalist
    assert "monai" in page and "NiiVue 0.69.0" in page
    assert external_references(page) == []


def test_embedded_volumes_are_the_run_files(page, completed_run):
    scenes, blobs = page_scenes(page)
    summary = pd.read_csv(completed_run / "cam" / "summary.csv", dtype={"subject": str})
    assert [s["id"] for s in scenes] == [f"{r.subject}/{r.acquisition}" for r in summary.itertuples()]
    for s, row in zip(scenes, summary.itertuples(), strict=True):
        labels = [v["label"] for v in s["volumes"]]
        assert labels == ["FA", f"CAM {row.cam_class} [0,1]", "CAM box", "true region"]
        fa, cam, box, roi = (decode_nifti(blobs[v["ref"]]) for v in s["volumes"])
        fa_file = nib.load(row.fa)
        cam_file = nib.load(completed_run / "cam" / row.subject / f"{row.acquisition}_cam01.nii.gz")
        for img in (fa, cam, box, roi):
            np.testing.assert_array_equal(img.affine, fa_file.affine)
            assert int(img.header["sform_code"]) == int(fa_file.header["sform_code"])
            assert int(img.header["qform_code"]) == int(fa_file.header["qform_code"])
        assert (
            np.abs(fa.get_fdata() - fa_file.get_fdata()).max() <= fa_file.get_fdata().max() / 255 / 2 + 1e-6
        )
        assert np.abs(cam.get_fdata() - cam_file.get_fdata()).max() <= 1 / 255 / 2 + 1e-6
        bbox = json.loads((completed_run / "cam" / row.subject / f"{row.acquisition}_bbox.json").read_text())
        on = np.argwhere(box.get_fdata() > 0)
        np.testing.assert_array_equal(on.min(0), bbox["box"]["min_index"])
        np.testing.assert_array_equal(on.max(0), bbox["box"]["max_index"])
        assert s["peak_mm"] == pytest.approx(bbox["peak_mm"])
        truth = nib.load(json.loads((completed_run / "config.json").read_text())["dataset_dir"]
                         + f"/derivatives/ground_truth/{row.subject}_roi.nii.gz").get_fdata() > 0  # fmt: skip
        outline = roi.get_fdata() > 0
        assert outline.any() and not (outline & ~truth).any()  # the outline lies on the region


def test_default_output_and_the_cli_message(completed_run, tmp_path, capsys):
    run = _copy(completed_run, tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_run_after_training_only_lists_what_is_missing(completed_run, tmp_path):
    run = _copy(completed_run, tmp_path / "trained", files=TRAINING_FILES)
    out = write_run_report(run)
    text = out.read_text(encoding="utf-8")
    assert "metrics/test_metrics.json (written by the bundle&#x27;s evaluating)" in text
    assert "cam/summary.csv (written by the bundle&#x27;s inference)" in text
    assert "No metrics/test_metrics.json" in text and "No CAM volumes in this run yet" in text
    assert "data:image/png;base64," in text  # the training curves are there
    assert (
        page_scenes(text) == ([], {}) and "niivue" not in text.lower().split("<main>")[1].split("</main>")[1]
    )
    test_subjects = json.loads((run / "datalist.json").read_text())["test"]
    assert all(e["subject"] in text for e in test_subjects)


def test_a_run_without_cam_volumes(completed_run, tmp_path):
    run = _copy(completed_run, tmp_path / "evaluated", skip=("cam",))
    text = write_run_report(run).read_text(encoding="utf-8")
    assert "cam/summary.csv (written by the bundle&#x27;s inference)" in text
    assert "No CAM volumes (cam/summary.csv" in text
    metrics = json.loads((run / "metrics" / "test_metrics.json").read_text())
    assert f"{metrics['subject_accuracy']:.3f}" in text


def test_missing_fa_shows_the_cam_alone_and_says_so(completed_run, tmp_path):
    run = _copy(completed_run, tmp_path / "moved")
    summary = pd.read_csv(run / "cam" / "summary.csv", dtype={"subject": str})
    summary["fa"] = [str(tmp_path / "gone" / f"{s}_fa.nii.gz") for s in summary["subject"]]
    summary.to_csv(run / "cam" / "summary.csv", index=False)
    for b in (run / "cam").glob("*/*_bbox.json"):
        d = json.loads(b.read_text())
        d["fa"] = str(tmp_path / "gone.nii.gz")
        b.write_text(json.dumps(d))
    text = write_run_report(run).read_text(encoding="utf-8")
    scenes, _ = page_scenes(text)
    assert len(scenes) == len(summary)
    assert all(
        s["volumes"][0]["label"] == "background" and s["volumes"][1]["role"] == "overlay" for s in scenes
    )
    assert "FA not found" in text


def _cli(args, cwd, isolated=False):
    """``hcp-cam ARGS``: in this process (``main``, the entry point), or as a new process with
    ``isolated`` (what a user's shell sees on stderr, logging included)."""
    if isolated:
        env = {**os.environ, "MPLBACKEND": "Agg"}
        cmd = [sys.executable, "-m", "hcp_cam.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


@pytest.mark.parametrize(
    "case, expect",
    [
        ("out_is_folder", "is a folder; give a file name"),
        ("out_under_a_file", "is a file, not a folder"),
        ("out_not_writable", "cannot write in the folder"),
        ("corrupt_metrics", "metrics/test_metrics.json: not valid JSON"),
        ("corrupt_cam", "cannot read as NIfTI"),
        ("not_a_run", "not a hcp-cam run folder"),
        ("no_folder", "folder not found"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(completed_run, tmp_path, case, expect):
    run = _copy(completed_run, tmp_path / "run")
    out = tmp_path / "out" / "report.html"
    target = run
    if case == "out_is_folder":
        out = tmp_path / "out"
        out.mkdir()
    elif case == "out_under_a_file":
        out = run / "config.json" / "report.html"
    elif case == "out_not_writable":  # /proc refuses new files even to root; a 0o555 folder does not
        out = "/proc/self/hcp-cam-report.html"
    elif case == "corrupt_metrics":
        (run / "metrics" / "test_metrics.json").write_text("{not json")
    elif case == "corrupt_cam":
        cam = next((run / "cam").glob("*/*_cam01.nii.gz"))
        cam.write_bytes(cam.read_bytes()[:200])
    elif case == "not_a_run":
        target = tmp_path / "empty"
        target.mkdir()
    elif case == "no_folder":
        target = tmp_path / "nowhere"
    before = tree_snapshot(tmp_path)
    proc = _cli(["report", str(target), "--out", str(out)], cwd=tmp_path, isolated=case == "corrupt_cam")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hcp-cam report: error: ") and expect in lines[0], (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert tree_snapshot(tmp_path) == before  # inputs untouched, no page, no temporary file


def test_several_runs_give_the_comparison_page(completed_run, tmp_path):
    a = _copy(completed_run, tmp_path / "fold0")
    b = _copy(completed_run, tmp_path / "fold1")
    cfg = json.loads((b / "config.json").read_text())
    cfg["fold"] = 1
    (b / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "compare.html"
    assert _cli(["report", str(a), str(b)], cwd=tmp_path).returncode == 2  # --out is required
    proc = _cli(["report", str(a), str(b), "--out", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    metrics = json.loads((a / "metrics" / "test_metrics.json").read_text())
    acc = metrics["subject_accuracy"]
    assert f"<td>{acc:.3f} ± 0.000</td>" in text  # two identical folds: std 0
    assert str(a) in text and str(b) in text and external_references(text) == []
    proc = _cli(
        ["compare", str(a), str(b), "--out", str(tmp_path / "table"), "--format", "md,html"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "table.md").is_file() and (tmp_path / "table.html").is_file()
    assert not (tmp_path / "table.csv").exists()


def test_viewer_subjects_limits_the_embedded_volumes(completed_run, tmp_path):
    n = len(pd.read_csv(completed_run / "cam" / "summary.csv"))
    one = write_run_report(completed_run, tmp_path / "one.html", viewer_subjects=1).read_text(
        encoding="utf-8"
    )
    none = write_run_report(completed_run, tmp_path / "none.html", viewer_subjects=0).read_text(
        encoding="utf-8"
    )
    assert len(page_scenes(one)[0]) == 1 and f"{n - 1} of {n} test acquisitions are not in the viewer" in one
    assert page_scenes(none) == ([], {}) and "<script>" not in none  # no viewer, no NiiVue
    assert len(none) < len(one) - 2_000_000
