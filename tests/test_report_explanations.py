"""The faithfulness, data-randomisation and repeatability sections of the run and compare pages, in a
real headless Chromium (Playwright), from the tiny bundle run after its inference."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from report_helpers import external_references, open_page
from scipy.stats import spearmanr

from hcp_cam.cam.data_randomisation import data_randomisation_check
from hcp_cam.cli import main
from hcp_cam.reports.explanation_sections import faithfulness_section


def _copy(run, dest, fold):
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("report.html", "checkpoints", "tensorboard"))
    cfg = json.loads((dest / "config.json").read_text())
    cfg["fold"] = fold
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


@pytest.fixture(scope="module")
def runs(completed_run, tmp_path_factory):
    """Two "folds" of one network: fold 1's CAMs are fold 0's flipped left-right and its CAM deletion
    areas 0.1 lower, so that the tables have something to show; fold 0 holds a data-randomisation check
    against fold 1."""
    root = tmp_path_factory.mktemp("explanations")
    a, b = _copy(completed_run, root / "fold0", 0), _copy(completed_run, root / "fold1", 1)
    for path in sorted((b / "cam").glob("*/*_cam.nii.gz")):
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine, img.header), path)
    for run, shift in ((a, 0.0), (b, -0.1)):
        # the tiny network's areas barely differ between subjects: the young subjects' CAM areas are set
        # apart (they must not enter the means of the map of "old")
        faith = pd.read_csv(run / "cam" / "faithfulness.csv", dtype={"subject": str})
        cam = faith["map"] == "cam"
        faith.loc[cam, "deletion_auc"] += shift
        faith.loc[cam & (faith["group"] != faith["class"]), "deletion_auc"] = 0.95
        faith.to_csv(run / "cam" / "faithfulness.csv", index=False)
    data_randomisation_check(a, b)
    return a, b


def _mapped(path) -> pd.DataFrame:
    t = pd.read_csv(path, dtype={"subject": str})
    return t[t["group"] == t["class"]]


def _cells(page, selector: str) -> list[list[str]]:
    rows = page.page.locator(f"{selector} tbody tr").all()
    return [[c.strip() for c in r.inner_text().split("\t")] for r in rows]


def _dice_top10(x: np.ndarray, y: np.ndarray) -> float:
    k = int(np.ceil(0.1 * x.size))
    ta, tb = set(np.argsort(-x, kind="stable")[:k]), set(np.argsort(-y, kind="stable")[:k])
    return 2 * len(ta & tb) / (2 * k)


def test_run_page_shows_faithfulness_and_data_randomisation(runs, browser):
    a, _ = runs
    assert main(["report", str(a)]) == 0
    page = open_page(browser, a / "report.html")
    try:
        assert page.errors == []
        cells = {r[0]: r for r in _cells(page, "#faithfulness table:not(.kv)")}
        assert list(cells) == ["cam", "gradcam", "gradcampp", "random", "fa"]
        t = _mapped(a / "cam" / "faithfulness.csv")
        for name, row in cells.items():
            sub = t[t["map"] == name]
            assert row[1] == str(len(sub))
            assert (
                row[2] == f"{sub['deletion_auc'].mean():.3f}"
                and row[3] == f"{sub['insertion_auc'].mean():.3f}"
            )
        wide = t.pivot_table(index="subject", columns="map", values="deletion_auc")
        assert cells["cam"][4] == f"{int((wide['cam'] < wide['random']).sum())}/{len(wide)}"
        assert cells["random"][4] == "-"
        # the curves' figure is there and decoded by the browser
        width = page.page.evaluate(
            "() => [...document.querySelectorAll('#faithfulness img')].map(i => i.naturalWidth)"
        )
        assert len(width) == 1 and width[0] > 500
        check = json.loads((a / "cam" / "data_randomisation.json").read_text())
        text = page.page.inner_text("#faithfulness")
        assert f"{check['spearman']['mean']:.3f}" in text and "Data randomisation" in text
        assert page.page.locator('nav a[href="#faithfulness"]').count() == 1
    finally:
        page.page.close()


def test_run_without_a_permuted_network_says_the_check_was_not_run(runs, tmp_path):
    # a run with faithfulness but no data_randomisation.json (the shared bundle run may hold one,
    # written by another test's check)
    b = shutil.copytree(runs[1], tmp_path / "fold1")
    (b / "cam" / "data_randomisation.json").unlink(missing_ok=True)
    assert (b / "cam" / "faithfulness.csv").is_file()
    body = faithfulness_section(b).body
    assert "<h3>Data randomisation</h3>" in body and "Not run for this run" in body
    assert "--data_randomisation_run" in body
    a, _ = runs
    assert "Not run for this run" not in faithfulness_section(a).body


def test_compare_page_shows_faithfulness_and_repeatability(runs, browser, tmp_path):
    a, b = runs
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--format", "md,html"]) == 0
    html = (tmp_path / "cmp.html").read_text(encoding="utf-8")
    assert external_references(html) == []
    page = open_page(browser, tmp_path / "cmp.html")
    try:
        assert page.errors == []
        # faithfulness: mean ± sample SD over the two folds of each fold's mean over its old test subjects
        cam = next(r for r in _cells(page, "#faithfulness table") if r[1] == "cam")
        per_fold = [_mapped(r / "cam" / "faithfulness.csv") for r in (a, b)]
        means = [t.loc[t["map"] == "cam", "deletion_auc"].mean() for t in per_fold]
        assert cam[0] == "alexnet" and cam[5] == "2"
        assert cam[2] == f"{np.mean(means):.3f} ± {np.std(means, ddof=1):.3f}"
        # repeatability: each test subject's CAM of fold 0 against its flipped copy in fold 1, by hand
        dice, rho = [], []
        for path in sorted((a / "cam").glob("*/*_cam.nii.gz")):
            x = np.asarray(nib.load(path).dataobj, dtype=np.float64)
            y = np.asarray(nib.load(b / path.relative_to(a)).dataobj, dtype=np.float64)
            known = (x != 0) | (y != 0)
            dice.append(_dice_top10(x[known], y[known]))
            rho.append(spearmanr(x[known], y[known]).statistic)
        (row,) = _cells(page, "#repeatability table")
        assert row[:2] == ["within", "alexnet"] and row[5] == str(len(dice))
        assert row[2] == f"{np.mean(dice):.3f} ± {np.std(dice, ddof=1):.3f}"
        assert row[3] == f"{np.mean(rho):.3f} ± {np.std(rho, ddof=1):.3f}"
        assert np.mean(dice) < 0.9  # flipped maps overlap less than identical ones would (1.0)
        for section in ("comparison", "faithfulness", "repeatability"):
            assert page.page.locator(f'nav a[href="#{section}"]').count() == 1
    finally:
        page.page.close()
