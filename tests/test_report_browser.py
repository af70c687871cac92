"""The run report of a real bundle run, rendered in a real headless Chromium (Playwright).

The run is the tiny training run of the bundle tests after ``evaluating`` and ``inference``; the
page is written by the command line, as a user would (``hcp-cam report RUN``).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from report_helpers import colour_counts, external_references, open_page, pixels

from hcp_cam.cli import main


@pytest.fixture(scope="module")
def report(completed_run):
    out = completed_run / "report.html"
    if out.exists():
        out.unlink()
    assert main(["report", str(completed_run)]) == 0
    return out


@pytest.fixture(scope="module")
def shown(browser, report):
    page = open_page(browser, report)
    state = page.wait_ready()
    yield page, state
    page.page.close()


def _test_rows(run):
    summary = json.loads((run / "datalist.json").read_text())["test"]
    return sorted({e["subject"] for e in summary})


def test_page_loads_without_script_errors_and_the_viewer_draws(shown, completed_run, tmp_path):
    page, state = shown
    assert state == "ready", page.page.locator("[data-nv=status]").inner_text()
    assert page.errors == [], page.errors
    assert [m for m in page.console if m[0] == "error"] == []
    # nothing fetched but the page itself: figures, scripts and volumes are inline
    assert page.requests and all(u.startswith(("file://", "data:")) for u in page.requests), page.requests
    assert [u for u in page.requests if u.startswith("file://")] == [(completed_run / "report.html").as_uri()]
    png = page.canvas_png()
    (tmp_path / "canvas.png").write_bytes(png)
    rgb = pixels(png)
    counts = colour_counts(rgb)
    # FA in grey, the CAM overlay in warm colours, the box in green, and black around the head
    assert counts["grey"] > 0.02 * rgb.shape[0] * rgb.shape[1], counts
    assert counts["warm"] > 50 and counts["green"] > 20 and counts["background"] > 0, counts
    shot = tmp_path / "page.png"
    page.page.screenshot(path=str(shot))  # the window as it opens: the title, contents and summary
    whole = pixels(shot.read_bytes())
    assert whole.std() > 20 and len(np.unique(whole.reshape(-1, 3), axis=0)) > 100  # not blank


def test_dom_text_holds_each_test_subject_and_the_subject_accuracy(shown, completed_run):
    page, _ = shown
    text = page.page.inner_text("body")
    subjects = _test_rows(completed_run)
    assert subjects and all(s in text for s in subjects), subjects
    metrics = json.loads((completed_run / "metrics" / "test_metrics.json").read_text())
    table = page.page.inner_text("#test-metrics table")
    accuracy_row = next(line for line in table.splitlines() if line.startswith("Accuracy"))
    assert f"{metrics['subject_accuracy']:.3f}" == accuracy_row.split("\t")[1].strip()
    options = page.page.locator("[data-nv=scene] option").all_inner_texts()
    assert sorted(o.split()[0] for o in options) == subjects


def _check_readout(loc, fa_img, cam_img):
    """The readout's voxel is the file's voxel under the cursor's mm, and its values are the files' there."""
    mm = np.asarray(loc["mm"], dtype=float)
    vox = np.asarray(loc["voxel"], dtype=int)
    np.testing.assert_array_equal(vox, np.rint(nib.affines.apply_affine(np.linalg.inv(fa_img.affine), mm)))
    fa, cam = fa_img.get_fdata(), cam_img.get_fdata()
    step_fa = fa.max() / 255
    assert loc["values"][0] == pytest.approx(fa[tuple(vox)], abs=step_fa * 0.51 + 1e-6)
    assert loc["values"][1] == pytest.approx(cam[tuple(vox)], abs=0.51 / 255 + 1e-6)


def test_cursor_starts_at_the_cam_peak_and_reads_the_files(shown, completed_run):
    page, _ = shown
    scene = page.viewer().get_attribute("data-scene")
    subject, acq = scene.split("/")
    box = json.loads((completed_run / "cam" / subject / f"{acq}_bbox.json").read_text())
    fa_img = nib.load(box["fa"])
    cam_img = nib.load(completed_run / "cam" / subject / f"{acq}_cam01.nii.gz")
    loc = page.location()
    np.testing.assert_allclose(loc["mm"], box["peak_mm"], atol=0.6 * min(fa_img.header.get_zooms()))
    assert loc["voxel"] == box["peak_voxel"]
    assert loc["values"][1] == pytest.approx(1.0, abs=1 / 255)  # the peak of the [0,1] map
    _check_readout(loc, fa_img, cam_img)
    # a click elsewhere moves the cursor; the readout follows the files there too
    rect = page.page.locator("#nv canvas").bounding_box()
    page.page.mouse.click(rect["x"] + rect["width"] * 0.2, rect["y"] + rect["height"] * 0.2)
    page.page.wait_for_timeout(300)
    moved = page.location()
    assert moved["mm"] != loc["mm"]
    _check_readout(moved, fa_img, cam_img)
    assert "mm (RAS)" in page.page.inner_text("[data-nv=location]")


def test_controls_change_what_is_drawn(shown, completed_run):
    page, _ = shown
    p = page.page

    def warm() -> int:
        p.wait_for_timeout(300)
        return colour_counts(pixels(page.canvas_png()))["warm"]

    def slide(name: str, value: float) -> None:
        p.eval_on_selector(
            f"[data-nv={name}]", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", str(value)
        )

    before = warm()
    slide("opacity", 0)
    assert before > 100 and warm() == 0
    slide("opacity", 0.7)
    slide("threshold", 1.0)
    assert warm() < before
    slide("threshold", 0.2)
    assert warm() == pytest.approx(before, rel=0.05)
    # the outline checkboxes hide the box
    green = colour_counts(pixels(page.canvas_png()))["green"]
    p.locator("[data-nv=outlines] input").first.uncheck()
    p.wait_for_timeout(300)
    assert colour_counts(pixels(page.canvas_png()))["green"] < green * 0.2 + 5
    p.locator("[data-nv=outlines] input").first.check()


def test_choosing_another_subject_draws_it(shown, completed_run):
    page, _ = shown
    subjects = _test_rows(completed_run)
    first = page.canvas_png()
    options = page.page.locator("[data-nv=scene] option")
    index = next(i for i in range(options.count()) if options.nth(i).inner_text().startswith(subjects[-1]))
    page.page.select_option("[data-nv=scene]", str(index))
    assert page.wait_ready(scene=f"{subjects[-1]}/dwi") == "ready"
    assert not np.array_equal(pixels(first), pixels(page.canvas_png()))
    assert page.errors == []


def test_html_has_no_external_reference(report):
    text = report.read_text(encoding="utf-8")
    assert external_references(text) == []
    assert "<link" not in text.lower()
    assert text.count("<script>") == 2  # NiiVue and the viewer, inline; data elements have a type


def test_without_webgl2_the_page_says_so_and_keeps_the_rest(playwright, report):
    from report_helpers import CHROMIUM_ARGS, chromium_path

    b = playwright.chromium.launch(
        executable_path=chromium_path(), args=[*CHROMIUM_ARGS, "--disable-3d-apis"]
    )
    try:
        page = open_page(b, report)
        assert page.wait_ready() == "error"
        assert "no WebGL2" in page.page.inner_text("[data-nv=status]")
        assert page.errors == []  # handled, not thrown
        assert page.page.locator("figure img").count() >= 3  # the figures are still there
    finally:
        b.close()
