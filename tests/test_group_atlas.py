"""Atlas label tables (CSV, TSV, FSL XML), label means, the regions and cluster tables, CLI choices."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from hcp_cam.cli import build_parser
from hcp_cam.errors import InputError
from hcp_cam.group import Atlas, load_atlas, read_label_table
from hcp_cam.group.cam_scale import CAM_SCALES
from hcp_cam.group.registration import DEFORMABLE, METRICS
from hcp_cam.group.tables import cluster_table, label_means, region_table

FSL_LABEL = """<?xml version="1.0" encoding="ISO-8859-1"?>
<atlas><header><name>Tiny</name><type>Label</type></header>
<data><label index="0" x="0" y="0" z="0">Unclassified</label>
<label index="1" x="1" y="1" z="1">Left thing</label><label index="2" x="1" y="1" z="1">Right thing</label></data>
</atlas>"""
FSL_PROB = FSL_LABEL.replace("<type>Label</type>", "<type>Probabilistic</type>")


def test_label_tables_in_their_three_forms(tmp_path):
    (tmp_path / "a.csv").write_text("index,name\n1,first\n2,second\n")
    (tmp_path / "a.tsv").write_text("Index\tName\n0\tbackground\n1\tfirst\n2\tsecond\n")
    (tmp_path / "label.xml").write_text(FSL_LABEL)
    (tmp_path / "prob.xml").write_text(FSL_PROB)
    assert read_label_table(tmp_path / "a.csv") == {1: "first", 2: "second"}
    assert read_label_table(tmp_path / "a.tsv") == {1: "first", 2: "second"}  # background dropped
    assert read_label_table(tmp_path / "label.xml") == {1: "Left thing", 2: "Right thing"}
    # the summary image of a probabilistic FSL atlas stores index + 1
    assert read_label_table(tmp_path / "prob.xml") == {1: "Unclassified", 2: "Left thing", 3: "Right thing"}


@pytest.mark.parametrize(
    "text, match",
    [
        ("label,region\n1,a\n", "needs columns index,name"),
        ("index,name\n1,a\n1,b\n", "listed twice"),
        ("index,name\nx,a\n", "not an integer"),
    ],
)
def test_bad_label_tables(tmp_path, text, match):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(InputError, match=match):
        read_label_table(tmp_path / "t.csv")


def test_a_probability_map_is_not_a_label_atlas(tmp_path):
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 0.5, np.float32), affine), tmp_path / "p.nii.gz")
    (tmp_path / "t.csv").write_text("index,name\n1,a\n")
    with pytest.raises(InputError, match="non-integer"):
        load_atlas(tmp_path / "p.nii.gz", tmp_path / "t.csv", nib.Nifti1Image(np.ones((4, 4, 4)), affine))


def test_label_means_use_known_voxels_only():
    labels = np.zeros((2, 2, 2), int)
    labels[0] = 1
    labels[1, 0] = 2
    maps = np.full((2, 2, 2, 2), np.nan)
    maps[0, 0] = [[1, 3], [5, 7]]  # subject 0 knows all of label 1
    maps[1, 0, 0, 0] = 10.0  # subject 1 knows one voxel of label 1
    means, known = label_means(maps, labels, [1, 2])
    np.testing.assert_allclose(means[:, 0], [4.0, 10.0])
    assert np.isnan(means[:, 1]).all()
    np.testing.assert_allclose(known, [[1.0, 0.0], [0.25, 0.0]])


def _toy(rng: np.random.Generator):
    labels = np.zeros((6, 6, 6), int)
    labels[:3] = 1
    labels[3:] = 2
    atlas = Atlas(labels=labels, names={1: "one", 2: "two"})
    groups = np.r_[np.zeros(6, int), np.ones(6, int)]
    cam = rng.normal(0, 0.1, (12, 6, 6, 6))
    cam[groups == 1, :3] += 1.0  # group 1 higher in label 1
    fa = rng.normal(0.5, 0.01, (12, 6, 6, 6))
    fa[groups == 1, 3:] -= 0.1  # group 1 lower FA in label 2
    return atlas, groups, cam, fa


def test_region_table_ranks_and_tests_the_labels():
    atlas, groups, cam, fa = _toy(np.random.default_rng(0))
    table = region_table(cam, fa, groups, ["young", "old"], atlas, 200, 0).set_index("name")
    assert list(table.columns[:4]) == ["label", "n_voxels", "mean_cam_young", "mean_cam_old"]
    assert table.loc["one", "rank"] == 1 and table.loc["two", "rank"] == 2
    assert table.loc["one", "difference"] == pytest.approx(1.0, abs=0.05)
    assert table.loc["one", "p_value"] < 0.05  # the null labels' error rate: tests/test_group_permutation.py
    assert table.loc["two", "fa_difference"] == pytest.approx(-0.1, abs=0.01)
    assert table.loc["two", "fa_p_value"] < 0.05 and table.loc["two", "fa_t"] < 0
    assert table.loc["one", "n_voxels"] == 108 and table.loc["one", "cam_known_fraction"] == 1.0


def test_cluster_table_names_the_peak_label():
    atlas, _, _, _ = _toy(np.random.default_rng(0))
    t = np.zeros((6, 6, 6))
    p = np.ones((6, 6, 6))
    t[1:3, 1:3, 1:3], p[1:3, 1:3, 1:3] = 5.0, 0.01
    t[4, 4, 4], p[4, 4, 4] = -4.0, 0.02
    t[2, 2, 2] = 6.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    table = cluster_table("cam", t, p, t / 10, affine, 0.05, atlas)
    assert list(table["n_voxels"]) == [8, 1] and list(table["sign"]) == ["positive", "negative"]
    first = table.iloc[0]
    assert (first["peak_i"], first["peak_j"], first["peak_k"]) == (2, 2, 2) and first["peak_x_mm"] == 4.0
    assert first["label_name"] == "one" and table.iloc[1]["label_name"] == "two"
    assert cluster_table("cam", t, np.ones_like(p), t, affine).empty


def test_the_cli_writes_out_the_registration_choices():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    actions = {a.dest: a for a in sub.choices["group"]._actions}
    assert tuple(actions["metric"].choices) == METRICS
    assert tuple(actions["deformable"].choices) == DEFORMABLE
    assert tuple(actions["cam_scale"].choices) == CAM_SCALES and actions["cam_scale"].default == CAM_SCALES[0]
