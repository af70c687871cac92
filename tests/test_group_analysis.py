"""`run_group_analysis` / `hcp-cam group` on bundle-like runs over misaligned synthetic brains."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from group_helpers import make_group_data, write_run

from hcp_cam.cli import main
from hcp_cam.group import run_group_analysis, to_subject
from hcp_cam.synth import ATLAS_LABELS

EFFECT = 1  # the atlas label of the planted region
PERMS = 200


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_group_data(tmp_path_factory.mktemp("group_data"))


@pytest.fixture(scope="module")
def result(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("group") / "out"
    res = run_group_analysis(
        data.runs, out, template=data.template, atlas=data.atlas, atlas_labels=data.atlas_labels,
        permutations=PERMS, seed=0, progress=False,
    )  # fmt: skip
    return res


def test_the_group_cam_difference_peaks_in_the_planted_region(result, data):
    peak = result.summary["cam_difference_peak"]
    assert peak["label"] == EFFECT and peak["label_name"] == "effect_region"
    assert peak["p_fwe"] < 0.05
    regions = pd.read_csv(result.out_dir / "regions.csv")
    assert list(regions["label"]) == sorted(ATLAS_LABELS)  # sorted by label, every label
    row = regions.set_index("label").loc[EFFECT]
    assert row["name"] == "effect_region" and row["rank"] == 1
    assert row["p_value"] < 0.05 and row["difference"] > 0
    assert row["mean_fa_old"] < row["mean_fa_young"] and row["fa_p_value"] < 0.05
    atlas = np.asarray(nib.load(data.atlas).dataobj)
    assert row["n_voxels"] == int((atlas == EFFECT).sum())
    clusters = pd.read_csv(result.out_dir / "clusters.csv")
    cam_pos = clusters[(clusters["map"] == "cam") & (clusters["sign"] == "positive")]
    assert len(cam_pos) and cam_pos.iloc[0]["label"] == EFFECT
    fa_neg = clusters[(clusters["map"] == "fa") & (clusters["sign"] == "negative")]
    assert len(fa_neg) and EFFECT in set(fa_neg["label"])
    assert {"young", "old"} == set(result.summary["subjects"]) and result.summary["left_out"] == []


def test_every_subject_is_registered_and_checked(result, data):
    qc = pd.read_csv(result.out_dir / "registration_qc.csv", dtype={"key": str, "subject": str})
    assert sorted(qc["subject"]) == sorted(data.subjects["subject"])
    assert (qc["correlation"] > 0.85).all() and not qc["flagged"].any()
    # each subject came from the run that held it out
    for r in qc.itertuples():
        test = json.loads((data.runs[0] / "datalist.json").read_text())["test"]
        expected = data.runs[0] if r.subject in {e["subject"] for e in test} else data.runs[1]
        assert r.run == str(expected)


def test_outputs_keep_the_templates_geometry(result, data):
    template = nib.load(data.template)
    ref = sitk.ReadImage(str(data.template))
    files = sorted(result.out_dir.glob("*.nii.gz")) + sorted((result.out_dir / "subjects").glob("*.nii.gz"))
    assert len(files) == 1 + 4 + 6 + 2 * 12  # the template, 4 group means, 2 x difference/t/p, 12 subjects
    for f in files:
        img = nib.load(f)
        assert img.shape == template.shape, f
        np.testing.assert_allclose(img.affine, template.affine, atol=1e-5, err_msg=str(f))
        assert int(img.header["sform_code"]) > 0 and int(img.header["qform_code"]) > 0, f
        np.testing.assert_allclose(img.get_qform(), template.affine, atol=1e-4)
        s = sitk.ReadImage(str(f))
        np.testing.assert_allclose(s.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(s.GetDirection(), ref.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(s.GetSpacing(), ref.GetSpacing(), atol=1e-6)


def test_unknown_cam_voxels_stay_unknown(result):
    for f in sorted((result.out_dir / "subjects").glob("*_cam.nii.gz")):
        cam = np.asarray(nib.load(f).dataobj)
        known = np.isfinite(cam)
        assert 0.5 * 14**3 < known.sum() < 1.2 * 14**3  # the known block, moved; the rest NaN
        assert not (cam[known] == 0).any()
    p = np.asarray(nib.load(result.out_dir / "group_difference_cam_p.nii.gz").dataobj)
    assert np.isnan(p).mean() > 0.5 and np.nanmin(p) >= 1 / (PERMS + 1)


def test_the_report_reads_what_the_group_analysis_writes(result, tmp_path):
    """``hcp-cam report`` on a real group output: the file and column names agree (``regions.csv``'s
    ``p_value``, ``registration_qc.csv``'s ``subject`` and ``flagged``), and NaN (unknown) is shown as 0."""
    from report_helpers import page_scenes

    from hcp_cam.reports.embed import decode_nifti
    from hcp_cam.reports.group_report import write_group_report

    out = tmp_path / "copy"
    shutil.copytree(result.out_dir, out, ignore=shutil.ignore_patterns("subjects", "transforms"))
    qc = pd.read_csv(out / "registration_qc.csv", dtype={"key": str, "subject": str})
    flagged = qc["subject"].iloc[-1]
    qc.loc[qc.index[-1], "flagged"] = True  # as a registration below qc_threshold is written
    qc.to_csv(out / "registration_qc.csv", index=False)
    text = write_group_report(out).read_text(encoding="utf-8")
    scenes, blobs = page_scenes(text)
    assert [s["id"] for s in scenes] == ["difference", "difference-significant", "difference-t", "difference-fa",
                                         "mean-old", "mean-young"]  # fmt: skip
    diff = np.asarray(nib.load(out / "group_difference_cam.nii.gz").dataobj)
    assert np.isnan(diff).any()
    shown = decode_nifti(blobs[scenes[0]["volumes"][1]["ref"]]).get_fdata()
    vmax = np.nanmax(np.abs(diff))
    assert (
        np.abs(shown - np.nan_to_num(diff)).max() <= vmax / 127 / 2 + 1e-6
        and (shown[np.isnan(diff)] == 0).all()
    )
    peak = result.summary["cam_difference_peak"]["mm"]  # the cursor starts at the peak |difference|
    np.testing.assert_allclose(scenes[0]["peak_mm"], peak, atol=1e-3)
    first = text.split("Atlas regions")[1].split("<tbody><tr>")[1].split("</tr>")[0]
    assert "effect_region" in first  # sorted by p_value: the planted region first
    assert f"registration flagged (flagged): {flagged}" in text
    assert "CAM scaling: zscore (each subject&#x27;s CAM z-scored" in text  # what the CAM values are


def test_a_label_shuffled_cohort_gives_no_significant_label(result, data, tmp_path):
    out = tmp_path / "shuffled"
    shutil.copytree(result.out_dir / "transforms", out / "transforms")  # the cache travels with its records
    res = run_group_analysis(
        data.runs, out, template=data.template, atlas=data.atlas, atlas_labels=data.atlas_labels,
        permutations=PERMS, seed=0, shuffle_groups=3, progress=False,
    )  # fmt: skip
    assert res.qc["transform_reused"].all()
    regions = pd.read_csv(out / "regions.csv")
    assert (regions["p_value"] >= 0.05).all() and (regions["fa_p_value"] >= 0.05).all()
    assert res.summary["shuffle_groups"] == 3


def test_a_second_call_reuses_the_transforms_and_rewrites_the_same_maps(result, data):
    before = np.asarray(nib.load(result.out_dir / "group_difference_cam.nii.gz").dataobj)
    rc = main(
        ["group", *map(str, data.runs), "--out", str(result.out_dir), "--template", str(data.template),
         "--atlas", str(data.atlas), "--atlas-labels", str(data.atlas_labels), "--permutations", str(PERMS),
         "--no-progress", "--no-figure"]
    )  # fmt: skip
    assert rc == 0
    qc = pd.read_csv(result.out_dir / "registration_qc.csv")
    assert qc["transform_reused"].all()
    after = np.asarray(nib.load(result.out_dir / "group_difference_cam.nii.gz").dataobj)
    np.testing.assert_array_equal(np.isnan(before), np.isnan(after))
    np.testing.assert_allclose(before[np.isfinite(before)], after[np.isfinite(after)], atol=1e-6)
    assert not (result.out_dir / "group_overview.png").exists()  # not asked for: the old one removed
    assert not list(result.out_dir.glob(".group-staging-*"))


def test_the_atlas_goes_back_into_a_subjects_grid(result, data):
    sid = data.subjects["subject"].iloc[0]
    path = to_subject(result.out_dir, sid, data.atlas)
    gt = data.dataset / "derivatives" / "ground_truth"
    fa = nib.load(gt / f"{sid}_fa.nii.gz")
    img = nib.load(path)
    np.testing.assert_allclose(img.affine, fa.affine)
    assert int(img.header["sform_code"]) > 0 and img.get_data_dtype().kind in "iu"
    region = np.asarray(img.dataobj) == EFFECT
    roi = np.asarray(nib.load(gt / f"{sid}_roi.nii.gz").dataobj) > 0
    assert 2 * (region & roi).sum() / (region.sum() + roi.sum()) > 0.7
    diff = to_subject(result.out_dir, sid, result.out_dir / "group_difference_cam.nii.gz")
    values = np.asarray(nib.load(diff).dataobj)
    assert np.isnan(values).any() and np.isfinite(values).any()  # unknown stays unknown there too


def test_shards_register_their_part_and_the_full_call_reuses_it(data, tmp_path):
    out = tmp_path / "sharded"
    common = dict(template=data.template, permutations=20, progress=False, figure=False)
    runs = data.runs[:1]  # 6 subjects: enough to split in two shards
    a = run_group_analysis(runs, out, shard="0/2", **common)
    b = run_group_analysis(runs, out, shard="1/2", **common)
    assert len(a.qc) == len(b.qc) == 3 and set(a.qc["key"]).isdisjoint(b.qc["key"])
    assert not (out / "group.json").exists()  # a shard writes transforms only
    full = run_group_analysis(runs, out, **common)
    assert full.qc["transform_reused"].all()


def test_a_study_template_is_built_when_none_is_given(data, tmp_path):
    out = tmp_path / "study"
    runs = data.runs[:1]  # 6 subjects
    res = run_group_analysis(runs, out, template_iterations=1, permutations=20, progress=False, figure=False)
    tmpl = nib.load(out / "template.nii.gz")
    first_subject = sorted(res.qc["subject"].astype(str))[0]
    first = nib.load(data.dataset / "derivatives" / "ground_truth" / f"{first_subject}_fa.nii.gz")
    np.testing.assert_allclose(tmpl.affine, first.affine)  # the first subject's grid
    assert json.loads((out / "template.json").read_text())["source"].startswith("study template")
    assert not res.qc["flagged"].any()
    again = run_group_analysis(
        runs, out, template_iterations=1, permutations=20, progress=False, figure=False
    )
    assert again.qc["transform_reused"].all()  # the same template: built once


# --- bad input: one line, exit 2, nothing written --------------------------------------------------


def _run_cli(capsys, args):
    rc = main(["group", *map(str, args)])
    err = capsys.readouterr().err.strip()
    return rc, err


def _check_refused(capsys, tmp_path, args, match):
    out = tmp_path / "out"
    rc, err = _run_cli(capsys, [*args, "--out", out, "--no-progress"])
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    assert not out.exists()


def test_refuses_a_template_that_is_not_3d(data, tmp_path, capsys):
    img = nib.load(data.template)
    four = tmp_path / "fa4d.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj)] * 2, -1), img.affine), four)
    _check_refused(capsys, tmp_path, [*data.runs, "--template", four], "expected a 3D image, got a 4D")


def test_refuses_atlas_labels_missing_from_the_table_and_the_reverse(data, tmp_path, capsys):
    table = pd.read_csv(data.atlas_labels)
    short = tmp_path / "short.csv"
    table[table["index"] != 5].to_csv(short, index=False)
    args = [*data.runs, "--template", data.template, "--atlas", data.atlas]
    _check_refused(
        capsys, tmp_path, [*args, "--atlas-labels", short], "atlas labels 5 are missing from the label table"
    )
    extra = tmp_path / "extra.tsv"
    pd.concat([table, pd.DataFrame({"index": [42], "name": ["nowhere"]})]).to_csv(
        extra, sep="\t", index=False
    )
    _check_refused(capsys, tmp_path, [*args, "--atlas-labels", extra], "lists labels 42 that the atlas")


def test_refuses_runs_with_different_grouping_rules(data, tmp_path, capsys):
    other = tmp_path / "other_rule"
    shutil.copytree(data.runs[1], other)
    dl = json.loads((other / "datalist.json").read_text())
    dl["groups"] = {"young": [8.0, 15.0], "old": [30.0, 75.0]}
    (other / "datalist.json").write_text(json.dumps(dl))
    _check_refused(
        capsys, tmp_path, [data.runs[0], other, "--template", data.template], "different grouping rules"
    )


def test_refuses_a_run_without_cam_volumes(data, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(data.runs[1] / "datalist.json", bare / "datalist.json")
    _check_refused(
        capsys, tmp_path, [data.runs[0], bare, "--template", data.template], "holds no CAM volumes"
    )


def test_refuses_fewer_than_two_subjects_in_a_group(data, tmp_path, capsys):
    entries = json.loads((data.runs[0] / "datalist.json").read_text())["test"]
    one_old = [e for e in entries if e["group"] == "young"] + [e for e in entries if e["group"] == "old"][:1]
    run = write_run(tmp_path / "one_old", data.dataset, one_old, [])
    _check_refused(capsys, tmp_path, [run, "--template", data.template], "'old' has 1")


def test_refuses_an_atlas_without_a_template_and_a_shard_without_one(data, tmp_path, capsys):
    _check_refused(capsys, tmp_path, [*data.runs, "--atlas", data.atlas, "--atlas-labels", data.atlas_labels],
                   "--atlas needs --template")  # fmt: skip
    out = tmp_path / "out"
    rc, err = _run_cli(capsys, [*data.runs, "--out", out, "--shard", "0/2", "--no-progress"])
    assert rc == 2 and "--shard needs a template" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_an_atlas_on_another_grid_is_resampled_and_said_so(data, tmp_path, caplog):
    img = nib.load(data.atlas)
    labels = np.asarray(img.dataobj)
    bigger = np.zeros((28, 32, 28), labels.dtype)
    bigger[2:26, 2:30, 2:26] = labels  # the same world positions on a larger grid
    affine = img.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ [-2, -2, -2] + affine[:3, 3]
    other = tmp_path / "atlas_big.nii.gz"
    nib.save(nib.Nifti1Image(bigger, affine), other)
    from hcp_cam.group import load_atlas

    with caplog.at_level("WARNING"):
        atlas = load_atlas(other, data.atlas_labels, nib.load(data.template))
    assert atlas.resampled and "resampled to the template with nearest neighbour" in caplog.text
    np.testing.assert_array_equal(atlas.labels, labels)


def test_cohort_keys_acquisitions_and_refuses_a_subject_held_out_twice(data, tmp_path):
    from hcp_cam.errors import ConfigError
    from hcp_cam.group import collect_cohort

    run = tmp_path / "two_acq"
    shutil.copytree(data.runs[0], run)
    dl = json.loads((run / "datalist.json").read_text())
    sid = dl["test"][0]["subject"]
    dl["test"].append({**dl["test"][0], "acquisition": "dir95_RL"})
    (run / "datalist.json").write_text(json.dumps(dl))
    summary = pd.read_csv(run / "cam" / "summary.csv", dtype=str)
    extra = summary[summary["subject"] == sid].assign(acquisition="dir95_RL")
    pd.concat([summary, extra]).to_csv(run / "cam" / "summary.csv", index=False)
    shutil.copy(run / "cam" / sid / "dwi_cam.nii.gz", run / "cam" / sid / "dir95_RL_cam.nii.gz")
    cohort = collect_cohort([run, data.runs[1]])
    keys = {m.key for m in cohort.maps if m.subject == sid}
    assert keys == {f"{sid}_dwi", f"{sid}_dir95_RL"}
    assert all(m.key == m.subject for m in cohort.maps if m.subject != sid)
    assert cohort.left_out == [] and cohort.labels == ["young", "old"]
    with pytest.raises(ConfigError, match="test subject of both"):
        collect_cohort([data.runs[0], run])
    only_first = collect_cohort([data.runs[0]])
    assert len(only_first.left_out) == 6  # the other fold's test subjects: no out-of-fold map
    other_class = tmp_path / "other_class"
    shutil.copytree(data.runs[1], other_class)
    s = pd.read_csv(other_class / "cam" / "summary.csv", dtype=str).assign(cam_class="young")
    s.to_csv(other_class / "cam" / "summary.csv", index=False)
    with pytest.raises(ConfigError, match="different classes"):
        collect_cohort([data.runs[0], other_class])


# --- per-subject CAM scaling: "where", not "how confident" ------------------------------------------


def test_zscore_scaling_finds_the_planted_region_where_a_global_gain_makes_raw_cams_differ_everywhere(
    result, data, tmp_path
):
    """Old subjects' CAMs carry the planted region AND a 3x gain of the whole map (a larger "old" score)
    over a per-subject smooth background: raw, every label with CAM values differs; z-scored per
    subject, only the planted region does."""
    runs = []
    for k, run in enumerate(data.runs):
        dl = json.loads((run / "datalist.json").read_text())
        runs.append(write_run(tmp_path / f"gain{k}", data.dataset, dl["test"], dl["training"], old_gain=3.0,
                              background=0.3))  # fmt: skip
    regions, summaries = {}, {}
    for scale in ("raw", "zscore"):
        out = tmp_path / scale
        shutil.copytree(result.out_dir / "transforms", out / "transforms")
        res = run_group_analysis(
            runs, out, template=data.template, atlas=data.atlas, atlas_labels=data.atlas_labels,
            permutations=PERMS, seed=0, cam_scale=scale, figure=False, progress=False,
        )  # fmt: skip
        assert res.qc["transform_reused"].all()
        regions[scale] = pd.read_csv(out / "regions.csv").set_index("label")
        summaries[scale] = json.loads((out / "group.json").read_text())
        assert summaries[scale]["cam_scale"] == scale
    with_cam = regions["raw"]["difference"].notna()
    assert with_cam.sum() == 10  # every label but the ventricles holds CAM values
    raw, z = regions["raw"][with_cam], regions["zscore"][with_cam]
    assert (raw["p_value"] < 0.05).all() and (raw["difference"] > 1.5).all()  # the gain, everywhere
    assert z.loc[EFFECT, "rank"] == 1 and z.loc[EFFECT, "p_value"] < 0.05 and z.loc[EFFECT, "t"] > 5
    others = z.drop(index=EFFECT)
    assert (others["p_value"] > 0.5).all() and (others["t"].abs() < 2).all()
    assert (z["difference"].drop(index=EFFECT).abs() < 0.5).all()
    # the raw mean over the brain records the gain: about 3x in the old group
    qc = pd.read_csv(tmp_path / "zscore" / "registration_qc.csv")
    means = qc.groupby("group")["cam_mean"].mean()
    assert 2.5 < means["old"] / means["young"] < 3.5
    fa_raw, fa_z = regions["raw"]["fa_p_value"], regions["zscore"]["fa_p_value"]
    pd.testing.assert_series_equal(fa_raw, fa_z)  # FA is never scaled


def test_scale_cam_zscores_the_known_brain_voxels_and_leaves_the_rest(tmp_path):
    from hcp_cam.errors import ConfigError, InputError
    from hcp_cam.group.cam_scale import scale_cam

    rng = np.random.default_rng(0)
    cam = (5.0 + 2.0 * rng.standard_normal((6, 6, 6))).astype(np.float32)
    cam[0] = np.nan  # unknown
    inside = np.zeros(cam.shape, bool)
    inside[:, 1:5] = True
    z, mean, sd = scale_cam(cam, inside, "zscore")
    values = cam[inside & np.isfinite(cam)]
    assert mean == pytest.approx(values.mean(), rel=1e-6) and sd == pytest.approx(values.std(), rel=1e-5)
    known = inside & np.isfinite(cam)
    assert abs(z[known].mean()) < 1e-5 and z[known].std() == pytest.approx(1.0, abs=1e-5)
    assert np.isnan(z[0]).all()
    np.testing.assert_allclose(z[1:, 0], (cam[1:, 0] - mean) / sd, rtol=1e-5)  # the same map, scaled
    again, *_ = scale_cam(7.0 * cam + 3.0, inside, "zscore")  # a gain and an offset cancel
    np.testing.assert_allclose(again[known], z[known], atol=1e-4)
    raw, *_ = scale_cam(cam, inside, "raw")
    np.testing.assert_array_equal(raw, cam)
    empty, m, _ = scale_cam(np.full(cam.shape, np.nan), inside)
    assert np.isnan(empty).all() and np.isnan(m)
    with pytest.raises(InputError, match="constant .* cannot be z-scored") as err:
        scale_cam(np.ones(cam.shape), inside, source=tmp_path / "s1_cam.nii.gz")
    assert str(err.value).startswith(str(tmp_path / "s1_cam.nii.gz"))
    with pytest.raises(ConfigError, match="cam_scale must be one of zscore, raw"):
        scale_cam(cam, inside, "percent")
