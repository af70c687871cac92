"""Figures across networks and subjects (hcp_cam.reports.gallery, `hcp-cam figures`) on real run folders.

Each fake run folder is what the bundle's inference leaves: ``config.json``, ``cam/summary.csv`` and
``cam/<subject>/<acquisition>_cam01.nii.gz``, written with nibabel; the FA maps are real NIfTI files
shared by the runs like the FA cache.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from PIL import Image

from hcp_cam.cam.figures import peak_planes
from hcp_cam.cli import main
from hcp_cam.errors import InputError
from hcp_cam.reports.gallery import (
    cohort,
    cohort_means,
    load_cohort,
    load_network_comparison,
    network_comparison,
    read_cam_run,
    run_labels,
)

SHAPE = (12, 14, 10)
AFFINE = np.array([[2.0, 0, 0, -12], [0, 2, 0, -14], [0, 0, 2.5, -10], [0, 0, 0, 1]])
GROUPS = {"s01": "young", "s02": "old", "s03": "young", "s04": "old"}


def write_nifti(data, path, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.set_sform(affine, 1)
    img.set_qform(affine, 1)
    nib.save(img, str(path))
    return path


def write_fa(cache, subject, shape=SHAPE, affine=AFFINE):
    g = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(float)
    r = sum(((g[a] - (s - 1) / 2) / (s / 2)) ** 2 for a, s in enumerate(shape))
    fa = np.where(r < 1, 0.3 + 0.02 * int(subject[1:]) + 0.3 * g[0] / shape[0], 0.0)
    return write_nifti(fa, cache / subject / "dwi_fa.nii.gz", affine)


def make_run(root, name, arch, subjects, fas, fold=0, num_folds=1, seed=0, split_of=None):
    """A run folder with a random [0, 1] CAM per subject; returns (run_dir, {subject: cam array})."""
    rng = np.random.default_rng(seed)
    run = root / name
    (run / "cam").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": arch, "fold": fold, "num_folds": num_folds}))
    rows, cams = [], {}
    for s in subjects:
        shape = nib.load(str(fas[s])).shape
        cam = rng.random(shape).astype(np.float32)
        write_nifti(cam, run / "cam" / s / "dwi_cam01.nii.gz", nib.load(str(fas[s])).affine)
        cams[s] = cam
        split = (split_of or {}).get(s, "test")
        rows.append(
            {
                "split": split,
                "subject": s,
                "acquisition": "dwi",
                "group": GROUPS[s],
                "fa": str(fas[s]),
                "cam_class": "old",
            }
        )
    pd.DataFrame(rows).to_csv(run / "cam" / "summary.csv", index=False)
    return run, cams


@pytest.fixture
def fas(tmp_path):
    return {s: write_fa(tmp_path / "cache", s) for s in GROUPS}


def png_planes(path):
    """Check a real PNG, return its ``hcp_cam_planes`` chunk as {row: (i, j, k)} or (i, j, k)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # more than a blank page
    text = Image.open(path).text["hcp_cam_planes"]
    if "=" not in text:
        return tuple(int(v) for v in text.split(","))
    return {k: tuple(int(v) for v in ijk.split(",")) for k, ijk in (p.split("=") for p in text.split(";"))}


def test_network_comparison_two_archs(tmp_path, fas):
    run_a, cams_a = make_run(tmp_path, "a", "alexnet", ["s03", "s01", "s02"], fas, seed=1)
    run_b, cams_b = make_run(tmp_path, "b", "vgg16", ["s04", "s02", "s03"], fas, seed=2)
    out = network_comparison([run_a, run_b], out_png=tmp_path / "fig" / "net.png")
    # default subject: the first common one in sorted order (s02), each row through its own map's peak
    planes = png_planes(out)
    assert planes == {"alexnet": peak_planes(cams_a["s02"]), "vgg16": peak_planes(cams_b["s02"])}
    data = load_network_comparison([run_a, run_b], subject="s03")
    assert (data.subject, data.acquisition) == ("s03", "dwi")
    np.testing.assert_array_equal(data.cams["vgg16"], cams_b["s03"])
    np.testing.assert_array_equal(data.fa, nib.load(str(fas["s03"])).get_fdata())
    np.testing.assert_array_equal(data.affine, AFFINE)


def test_labels_by_fold_when_archs_repeat(tmp_path, fas):
    runs = [make_run(tmp_path, f"r{k}", "alexnet", ["s01"], fas, fold=k, num_folds=2)[0] for k in (0, 1)]
    runs.append(make_run(tmp_path, "r2", "vgg16", ["s01"], fas)[0])
    assert run_labels([read_cam_run(r) for r in runs]) == ["alexnet fold 0", "alexnet fold 1", "vgg16"]
    data = load_network_comparison(runs)
    assert list(data.cams) == ["alexnet fold 0", "alexnet fold 1", "vgg16"]
    with pytest.raises(InputError, match="given twice"):
        load_network_comparison([runs[0], runs[0]])


def test_no_common_subject_lists_subjects(tmp_path, fas):
    run_a, _ = make_run(tmp_path, "a", "alexnet", ["s01", "s02"], fas)
    run_b, _ = make_run(tmp_path, "b", "vgg16", ["s03"], fas)
    with pytest.raises(InputError, match="no subject is in every run") as e:
        network_comparison([run_a, run_b], out_png=tmp_path / "net.png")
    assert "['s01', 's02']" in str(e.value) and "['s03']" in str(e.value)
    assert str(run_a) in str(e.value) and str(run_b) in str(e.value)
    with pytest.raises(InputError, match="'s01' is not in cam/summary.csv of") as e:
        load_network_comparison([run_a, run_b], subject="s01")
    assert str(run_b) in str(e.value) and str(run_a) not in str(e.value)
    with pytest.raises(InputError, match="no acquisition 'b1000'"):
        load_network_comparison([run_a], subject="s01", acquisition="b1000")
    assert not (tmp_path / "net.png").exists()


def test_fa_grid_differs_between_runs(tmp_path, fas):
    run_a, _ = make_run(tmp_path, "a", "alexnet", ["s01"], fas)
    shifted = AFFINE.copy()
    shifted[0, 3] += 1.0  # same shape, origin 1 mm apart: another cache
    other = {"s01": write_fa(tmp_path / "other_cache", "s01", affine=shifted)}
    run_b, _ = make_run(tmp_path, "b", "vgg16", ["s01"], other)
    with pytest.raises(InputError, match="FA grid of subject 's01' differs between runs") as e:
        load_network_comparison([run_a, run_b])
    assert str(other["s01"]) in str(e.value)


def test_cam_not_on_fa_grid_names_the_file(tmp_path, fas):
    run, _ = make_run(tmp_path, "a", "alexnet", ["s01", "s02"], fas)
    cam_path = run / "cam" / "s02" / "dwi_cam01.nii.gz"
    write_nifti(np.zeros((12, 14, 9)), cam_path)
    with pytest.raises(InputError, match="not on its FA's grid") as e:
        cohort_means(run)
    assert str(e.value).startswith(str(cam_path))


def test_cohort_means_equal_numpy_mean(tmp_path, fas):
    subjects = ["s01", "s02", "s03", "s04"]
    run, cams = make_run(tmp_path, "a", "alexnet", subjects, fas, split_of={"s04": "val"})
    means = cohort_means(run)
    assert list(means) == ["old", "young"]
    for group in ("old", "young"):
        members = [s for s in subjects if GROUPS[s] == group]
        expected = np.mean(np.stack([cams[s] for s in members]).astype(np.float64), axis=0)
        np.testing.assert_allclose(means[group], expected, rtol=1e-12, atol=0)
        assert means[group].shape == SHAPE
    # split: the "val" subject s04 leaves the old group with s02 alone
    test_means = cohort_means(run, split="test")
    np.testing.assert_array_equal(test_means["old"], cams["s02"].astype(np.float64))
    with pytest.raises(InputError, match="no acquisition of split 'train'"):
        cohort_means(run, split="train")


def test_cohort_writes_png_and_nifti_with_fa_affine(tmp_path, fas):
    run, cams = make_run(tmp_path, "a", "alexnet", ["s01", "s02", "s03", "s04"], fas)
    paths = cohort(run, tmp_path / "out" / "cohort.png")
    assert [p.name for p in paths] == ["cohort.png", "cohort_old.nii.gz", "cohort_young.nii.gz"]
    fa = nib.load(str(fas["s01"]))
    # background: the mean FA over the same acquisitions
    mean_fa = np.mean([nib.load(str(fas[s])).get_fdata() for s in GROUPS], axis=0)
    np.testing.assert_allclose(load_cohort(run).background, mean_fa, rtol=1e-12, atol=0)
    # the figure's planes: the peak of the summed group means (cohort_figure's default)
    means = cohort_means(run)
    assert png_planes(paths[0]) == peak_planes(means["old"] + means["young"])
    for group, path in zip(("old", "young"), paths[1:], strict=True):
        img = nib.load(str(path))
        np.testing.assert_array_equal(img.affine, fa.affine)
        assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
        np.testing.assert_allclose(img.get_fdata(), means[group], atol=1e-7)
        assert f"group {group}, n=2" in img.header["descrip"].item().decode()
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp" in p.name]


def test_cohort_different_grids_needs_registration(tmp_path, fas):
    fas = dict(fas)
    fas["s03"] = write_fa(tmp_path / "native", "s03", shape=(12, 14, 11))
    run, _ = make_run(tmp_path, "a", "alexnet", ["s01", "s02", "s03"], fas)
    with pytest.raises(InputError, match="do not share a grid") as e:
        cohort(run, tmp_path / "out" / "cohort.png")
    assert "template" in str(e.value) and "s03/dwi" in str(e.value)
    rotated = AFFINE.copy()
    rotated[:2, :2] = [[0, -2.0], [2.0, 0]]  # same shape, another orientation
    fas["s03"] = write_fa(tmp_path / "native2", "s03", affine=rotated)
    run2, _ = make_run(tmp_path, "b", "alexnet", ["s01", "s03"], fas)
    with pytest.raises(InputError, match="do not share a grid"):
        cohort_means(run2)
    assert not (tmp_path / "out").exists()


def test_cli_figures(tmp_path, fas, capsys):
    run_a, _ = make_run(tmp_path, "alexnet_fold0", "alexnet", ["s01", "s02"], fas, fold=0, num_folds=2)
    run_b, _ = make_run(tmp_path, "vgg16_fold0", "vgg16", ["s02", "s04"], fas, seed=3)
    out = tmp_path / "figs"
    assert main(["figures", str(run_a), str(run_b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    expected = [
        "networks_s02.png",
        "cohort_alexnet_fold0.png",
        "cohort_alexnet_fold0_old.nii.gz",
        "cohort_alexnet_fold0_young.nii.gz",
        "cohort_vgg16.png",
        "cohort_vgg16_old.nii.gz",
    ]
    assert printed == [str(out / name) for name in expected]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    assert set(png_planes(out / "networks_s02.png")) == {"alexnet", "vgg16"}

    # bad input: exit 2, one line naming the problem, nothing written
    out2 = tmp_path / "figs2"
    assert main(["figures", str(run_a), str(run_b), "--out", str(out2), "--subject", "s04"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hcp-cam figures: error:" in err and "'s04'" in err
    assert main(["figures", str(tmp_path / "nowhere"), "--out", str(out2)]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (run_b / "cam" / "summary.csv").unlink()
    assert main(["figures", str(run_a), str(run_b), "--out", str(out2)]) == 2
    assert "summary.csv: file not found" in capsys.readouterr().err
    assert not out2.exists()
