"""`hcp-cam report GROUP_OUT` on a group output written here with real NIfTI and CSV files, under the
names of ``hcp-cam group`` (issue 13), rendered in headless Chromium."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from report_helpers import colour_counts, external_references, open_page, page_scenes, pixels

from hcp_cam.cli import main
from hcp_cam.io import save_nifti_like
from hcp_cam.reports.embed import decode_nifti
from hcp_cam.reports.plots import new_figure, save_figure
from hcp_cam.synth import fa_from_diffusivities, make_affine, make_phantom

SHAPE = (40, 48, 40)
POS_CENTER, NEG_CENTER = (26, 24, 22), (12, 30, 18)


def _ball(center, radius):
    grid = np.indices(SHAPE).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(center), axis=-1) <= radius


def make_group_output(root, other_grid: str | None = None):
    """A group output: template, CAM difference with a positive blob that survives FWE (p = 0.002) and
    a negative one that does not (p = 0.6), its t map, per-group means, the three tables and the figure."""
    affine = make_affine(SHAPE, (2.5, 2.5, 2.5))
    ph = make_phantom(SHAPE, (2.5, 2.5, 2.5))
    template = nib.Nifti1Image(fa_from_diffusivities(ph.ad, ph.rd).astype(np.float32), affine)
    template.set_sform(affine, 4)  # template space ("MNI") in the sform, scanner in the qform
    template.set_qform(affine, 1)
    root.mkdir(parents=True, exist_ok=True)
    save_nifti_like(template.get_fdata(), template, root / "template.nii.gz")
    pos, neg = _ball(POS_CENTER, 4), _ball(NEG_CENTER, 4)
    diff = np.where(pos, 0.8, 0.0) - np.where(neg, 0.5, 0.0)
    save_nifti_like(diff, template, root / "group_difference_cam.nii.gz")
    save_nifti_like(diff * 6, template, root / "group_difference_cam_t.nii.gz")
    save_nifti_like(
        np.where(pos, 0.002, np.where(neg, 0.6, 1.0)), template, root / "group_difference_cam_p.nii.gz"
    )
    save_nifti_like(np.where(pos, -0.05, 0.0), template, root / "group_difference_fa.nii.gz")
    for g, level in (("young", 0.2), ("old", 1.0)):
        save_nifti_like(np.where(pos, level, 0.1), template, root / f"group_{g}_mean_cam.nii.gz")
    if other_grid:
        small = nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), affine)
        nib.save(small, root / other_grid)
    pd.DataFrame(
        {"label": [1, 2, 3], "name": ["corpus callosum", "planted region", "cingulum"], "n_voxels": [300, 257, 120],
         "mean_cam_young": [0.1, 0.2, 0.1], "mean_cam_old": [0.1, 1.0, 0.12], "difference": [0.0, 0.8, 0.02],
         "p_value": [0.71, 0.002, 0.43], "mean_fa_young": [0.6, 0.5, 0.55], "mean_fa_old": [0.6, 0.42, 0.55]}
    ).to_csv(root / "regions.csv", index=False)  # fmt: skip
    pd.DataFrame({"cluster": [1], "size": [257], "peak_value": [0.8], "peak_x_mm": [-13.75], "peak_y_mm": [0.0],
                  "peak_z_mm": [-3.75], "label": ["planted region"]}).to_csv(root / "clusters.csv", index=False)  # fmt: skip
    pd.DataFrame({"subject": ["100307", "100408", "101915"], "correlation": [0.95, 0.93, 0.61],
                  "flagged": [False, False, True]}).to_csv(root / "registration_qc.csv", index=False)  # fmt: skip
    fig = new_figure(4, 3)
    fig.add_subplot(1, 1, 1).imshow(template.get_fdata()[:, :, 20].T, cmap="gray", origin="lower")
    save_figure(fig, root / "group_overview.png")
    (root / "group_config.json").write_text(json.dumps({"permutations": 1000, "seed": 0}))
    return root


@pytest.fixture(scope="module")
def group_page(tmp_path_factory):
    root = make_group_output(tmp_path_factory.mktemp("group") / "OUT", other_grid="group_mid_mean_cam.nii.gz")
    assert main(["report", str(root)]) == 0
    return root, root / "report.html"


def test_group_page_holds_the_maps_and_tables(group_page):
    root, out = group_page
    text = out.read_text(encoding="utf-8")
    assert external_references(text) == []
    scenes, blobs = page_scenes(text)
    assert [s["id"] for s in scenes] == ["difference", "difference-significant", "difference-t", "difference-fa",
                                         "mean-old", "mean-young"]  # fmt: skip
    template = nib.load(root / "template.nii.gz")
    diff = nib.load(root / "group_difference_cam.nii.gz").get_fdata()
    p = nib.load(root / "group_difference_cam_p.nii.gz").get_fdata()
    shown = decode_nifti(blobs[scenes[0]["volumes"][1]["ref"]])
    assert int(shown.header["sform_code"]) == 4 and int(shown.header["qform_code"]) == 1
    np.testing.assert_array_equal(shown.affine, template.affine)
    assert np.abs(shown.get_fdata() - diff).max() <= 0.8 / 127 / 2 + 1e-6  # signed: int8, zero stays zero
    assert (shown.get_fdata()[diff == 0] == 0).all()
    kept = decode_nifti(blobs[scenes[1]["volumes"][1]["ref"]]).get_fdata()
    assert (kept[p >= 0.05] == 0).all() and (kept[p < 0.05] > 0).all()
    # the atlas table sorted by p: the planted region first
    first = text.split("Atlas regions")[1].split("<tbody><tr>")[1].split("</tr>")[0]
    assert "planted region" in first
    assert "registration flagged (flagged): 101915" in text
    assert "group_mid_mean_cam.nii.gz: not on the template&#x27;s grid; left out" in text
    assert "&quot;permutations&quot;: 1000" in text  # the recorded settings, under provenance


def test_group_page_draws_positive_and_negative_and_thresholds_by_p(browser, group_page):
    root, out = group_page
    affine = nib.load(root / "template.nii.gz").affine
    at_pos, at_neg = (nib.affines.apply_affine(affine, c).tolist() for c in (POS_CENTER, NEG_CENTER))
    page = open_page(browser, out)
    try:
        assert page.wait_ready() == "ready"
        assert page.errors == [] and [m for m in page.console if m[0] == "error"] == []
        assert all(u.startswith(("file://", "data:")) for u in page.requests)
        start = colour_counts(pixels(page.canvas_png()))
        assert start["warm"] > 30 and start["grey"] > 1000, start
        assert page.location()["values"][1] == pytest.approx(0.8, abs=0.01)  # cursor at the peak |difference|
        assert page.move_to(at_neg)["values"][1] == pytest.approx(-0.5, abs=0.01)
        assert colour_counts(pixels(page.canvas_png()))["cool"] > 30  # the negative blob in winter's blues
        page.page.select_option("[data-nv=scene]", "1")
        assert page.wait_ready(scene="difference-significant") == "ready"
        # the negative blob does not survive FWE: nothing cool there; the positive one does
        assert page.move_to(at_neg)["values"][1] == 0
        assert colour_counts(pixels(page.canvas_png()))["cool"] == 0
        assert page.move_to(at_pos)["values"][1] == pytest.approx(0.8, abs=0.01)
        assert colour_counts(pixels(page.canvas_png()))["warm"] > 30
        assert page.errors == []
    finally:
        page.page.close()
