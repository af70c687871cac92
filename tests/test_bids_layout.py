"""Raw BIDS through pybids: entities, the inheritance principle, the cached index, participants.tsv,
and every bad input of the BIDS list as a one-line error that names the file and writes nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from bids_trees import bids_root, write_bval, write_bvec, write_dwi, write_gradients, write_table
from bundle_helpers import tree_snapshot

from hcp_cam.cli import main
from hcp_cam.data import SPLITS, make_datalist
from hcp_cam.data.bids import bids_index, find_bids_acquisitions, tree_fingerprint
from hcp_cam.data.layouts import detect_layout, find_acquisitions
from hcp_cam.errors import InputError

AGES = {"sub-01": "10", "sub-02": "12", "sub-03": "14", "sub-04": "30", "sub-05": "40", "sub-06": "50"}


def participants_rows(ages=AGES, extra=()):
    header = ["participant_id", "age", *[c for c, _ in extra]]
    return [header] + [[s, a, *[v for _, v in extra]] for s, a in ages.items()]


def simple_bids(root: Path, ages=AGES, sessions=("1",), extra=()) -> Path:
    """Every subject with one DWI per session, all inheriting a top-level dwi.bval/.bvec."""
    bids_root(root, participants=participants_rows(ages, extra))
    write_gradients(root / "dwi")
    for s in ages:
        for ses in sessions:
            write_dwi(root / s / f"ses-{ses}" / "dwi" / f"{s}_ses-{ses}_dwi.nii.gz")
    return root


def test_sessions_runs_acq_dir_and_the_inheritance_principle(tmp_path):
    root = bids_root(tmp_path / "bids")
    write_gradients(root / "dwi")  # top level: every DWI without a nearer applicable file
    write_gradients(root / "acq-hi_dwi", n=9)  # applies to acq-hi DWIs only, wherever they are
    write_dwi(root / "sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz")
    write_dwi(root / "sub-01/ses-2/dwi/sub-01_ses-2_acq-hi_dir-AP_run-1_dwi.nii.gz", n=9)
    write_dwi(root / "sub-01/ses-2/dwi/sub-01_ses-2_acq-hi_dir-PA_run-2_dwi.nii.gz", n=9)
    write_dwi(root / "sub-02/dwi/sub-02_dwi.nii.gz")
    write_bval(root / "sub-02/sub-02_dwi.bval")  # subject level: nearer than the top level
    write_bvec(root / "sub-02/dwi/sub-02_dwi.bvec")  # beside the file: nearest
    write_dwi(root / "sub-01/anat/sub-01_T1w.nii.gz", n=1)  # not diffusion: ignored

    acqs = find_bids_acquisitions(root, index_dir=tmp_path / "index")
    got = {(a.subject, a.acquisition): a for a in acqs}
    assert list(got) == [
        ("sub-01", "ses-1_dwi"),
        ("sub-01", "ses-2_acq-hi_dir-AP_run-1_dwi"),
        ("sub-01", "ses-2_acq-hi_dir-PA_run-2_dwi"),
        ("sub-02", "dwi"),
    ]
    plain = got[("sub-01", "ses-1_dwi")]
    assert (plain.bvals, plain.bvecs) == (root / "dwi.bval", root / "dwi.bvec")
    assert plain.entities == (("session", "1"),) and plain.compute_mask and plain.mask is None
    hi = got[("sub-01", "ses-2_acq-hi_dir-AP_run-1_dwi")]
    assert (hi.bvals, hi.bvecs) == (root / "acq-hi_dwi.bval", root / "acq-hi_dwi.bvec")
    assert hi.entities == (("session", "2"), ("acquisition", "hi"), ("direction", "AP"), ("run", "1"))
    sub2 = got[("sub-02", "dwi")]
    assert (sub2.bvals, sub2.bvecs) == (root / "sub-02/sub-02_dwi.bval", root / "sub-02/dwi/sub-02_dwi.bvec")


def test_every_acquisition_of_a_subject_lands_in_its_subjects_split(tmp_path):
    root = simple_bids(tmp_path / "bids", sessions=("1", "2"))
    write_dwi(root / "sub-01/ses-2/dwi/sub-01_ses-2_run-2_dwi.nii.gz")
    dl = make_datalist(root, index_dir=tmp_path / "index")
    assert dl["layout"] == "bids"
    where = {}
    for split in SPLITS:
        for e in dl[split]:
            where.setdefault(e["subject"], set()).add(split)
            assert e["compute_mask"] is True and "mask" not in e and e["bvals"] == "dwi.bval"
    assert set(where) == set(AGES) and all(len(s) == 1 for s in where.values()), where
    n_acq = {s: sum(e["subject"] == s for split in SPLITS for e in dl[split]) for s in AGES}
    assert n_acq["sub-01"] == 3 and all(n_acq[s] == 2 for s in AGES if s != "sub-01")


def test_index_is_reused_while_the_tree_is_unchanged_and_rebuilt_when_it_changes(tmp_path):
    root = simple_bids(tmp_path / "bids")
    index = tmp_path / "index"
    bids_index(root, index)
    (folder,) = [p for p in (index).rglob("layout_index.sqlite")]
    stamp = folder.stat().st_mtime_ns
    layout = bids_index(root, index)  # loaded, not rebuilt
    assert folder.stat().st_mtime_ns == stamp and len(layout.get(suffix="dwi", extension=".nii.gz")) == 6
    (root / "code").mkdir()
    (root / "code" / "notes.txt").write_text("not indexed")  # ignored by the index and the fingerprint
    assert list(index.rglob("layout_index.sqlite")) == [folder]
    write_dwi(root / "sub-07/ses-1/dwi/sub-07_ses-1_dwi.nii.gz")
    before = tree_fingerprint(root)
    acqs = find_bids_acquisitions(root, index)
    assert "sub-07" in {a.subject for a in acqs}
    (new,) = list(index.rglob("layout_index.sqlite"))  # the stale index was removed
    assert new != folder and before in str(new)


def test_participants_without_prefix_are_read_with_one_warning_and_metadata_kept(tmp_path, caplog):
    ages = {k.removeprefix("sub-") if k in ("sub-01", "sub-04") else k: v for k, v in AGES.items()}
    root = simple_bids(tmp_path / "bids")
    write_table(
        root / "participants.tsv",
        [["participant_id", "age", "sex", "handedness"]]
        + [[s, a, "F" if i % 2 else "M", "" if i == 0 else "R"] for i, (s, a) in enumerate(ages.items())],
    )
    with caplog.at_level(logging.WARNING):
        dl = make_datalist(root, index_dir=tmp_path / "index")
    warnings = [r for r in caplog.records if "lack the BIDS 'sub-' prefix" in r.getMessage()]
    assert len(warnings) == 1 and "01, 04" in warnings[0].getMessage()
    entries = {e["subject"]: e for s in SPLITS for e in dl[s]}
    assert set(entries) == set(AGES)
    assert entries["sub-01"]["participant"] == {"sex": "M"}  # empty cells are left out
    assert entries["sub-02"]["participant"] == {"sex": "F", "handedness": "R"}
    assert entries["sub-04"]["age"] == 30.0


def test_subjects_with_data_and_no_row_and_the_reverse_are_listed(tmp_path, caplog):
    rows = {**AGES, "sub-09": "35"}
    root = simple_bids(tmp_path / "bids")
    write_dwi(root / "sub-08/ses-1/dwi/sub-08_ses-1_dwi.nii.gz")
    write_table(root / "participants.tsv", participants_rows(rows))
    with caplog.at_level(logging.WARNING):
        dl = make_datalist(root, index_dir=tmp_path / "index")
    assert "have no data: sub-09" in caplog.text
    assert "with data have no usable participants row" in caplog.text and "sub-08" in caplog.text
    assert {e["subject"] for s in SPLITS for e in dl[s]} == set(AGES)


def _derivative_tree(root: Path) -> Path:
    bids_root(root, derivative=True)
    for s in AGES:
        dwi = write_dwi(root / s / "dwi" / f"{s}_space-ACPC_desc-preproc_dwi.nii.gz")
        write_gradients(Path(str(dwi).removesuffix(".nii.gz")))
    return root


def _no_dwi(root: Path) -> Path:
    bids_root(root, participants=participants_rows())
    write_dwi(root / "sub-01/anat/sub-01_T1w.nii.gz", n=1)
    return root


def _no_bval(root: Path) -> Path:
    root = simple_bids(root)
    (root / "dwi.bval").unlink()
    write_bval(root / "sub-02/ses-1/dwi/sub-02_ses-1_dwi.bval")  # the others have none at all
    return root


def _wrong_count(root: Path) -> Path:
    root = simple_bids(root)
    write_bvec(root / "dwi.bvec", n=6)
    return root


def _no_participant_id(root: Path) -> Path:
    root = simple_bids(root)
    write_table(root / "participants.tsv", [["subject_label", "age"]] + [[s, a] for s, a in AGES.items()])
    return root


def _no_age(root: Path) -> Path:
    root = simple_bids(root)
    write_table(root / "participants.tsv", [["participant_id", "sex"]] + [[s, "F"] for s in AGES])
    return root


def _raw_with_derivatives(root: Path) -> Path:
    _no_dwi(root)
    _derivative_tree(root / "derivatives" / "qsiprep")
    return root


@pytest.mark.parametrize(
    "make, layout, file, message",
    [
        (_no_dwi, "auto", "", "a BIDS root without any *_dwi.nii[.gz]"),
        (_no_dwi, "bids", "", "a BIDS root without any *_dwi.nii[.gz]"),
        (_no_bval, "auto", "sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz", "no .bval for this DWI"),
        (_wrong_count, "auto", "dwi.bvec", "b-vectors are 3x6, expected 3 x 7 for the DWI sub-01/ses-1/dwi/"),
        (_no_participant_id, "auto", "participants.tsv", "needs a 'participant_id' column"),
        (_no_age, "auto", "participants.tsv", "and an 'age' column (or 'group'); found columns ['participant_id', 'sex']"),
        (_derivative_tree, "bids", "", "raw BIDS was asked for, but this looks like QSIPrep derivatives"),
        (simple_bids, "qsiprep", "", "QSIPrep derivatives were asked for, but this looks like a raw BIDS dataset"),
        (_raw_with_derivatives, "auto", "", "its derivatives hold QSIPrep-like DWIs: pass that folder"),
        (_raw_with_derivatives, "qsiprep", "", "pass its QSIPrep folder"),
    ],
)  # fmt: skip
def test_bad_bids_input_is_one_line_naming_the_file_exit_2_nothing_written(
    tmp_path, capsys, make, layout, file, message
):
    root = make(tmp_path / "bids")
    before = tree_snapshot(root)
    out = tmp_path / "out" / "datalist.json"
    argv = ["datalist", str(root), "--out", str(out), "--layout", layout, "--cache-dir", str(tmp_path / "c")]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("hcp-cam datalist: error: ") and len(err.strip().splitlines()) == 1, err
    assert f"error: {root / file if file else root}: " in err, err
    assert message in err, err
    assert "Traceback" not in err
    assert not out.exists() and not out.parent.exists()
    assert tree_snapshot(root) == before  # inputs untouched


def test_wrong_bval_count_names_the_inherited_file(tmp_path):
    root = simple_bids(tmp_path / "bids")
    write_bval(root / "dwi.bval", n=8)
    with pytest.raises(InputError) as err:
        find_bids_acquisitions(root)
    assert str(err.value) == (
        f"{root / 'dwi.bval'}: 8 b-values but the DWI sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz has 7 volumes "
        "(inherited from a folder above the DWI)"
    )


def test_detection_from_names_only(tmp_path):
    assert detect_layout(simple_bids(tmp_path / "a")) == "bids"
    assert detect_layout(_derivative_tree(tmp_path / "b")) == "qsiprep"
    hcp = tmp_path / "c" / "100307" / "T1w" / "Diffusion"
    hcp.mkdir(parents=True)
    assert detect_layout(tmp_path / "c") == "hcp"
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="no diffusion acquisitions found; looked for"):
        detect_layout(tmp_path / "d")
    with pytest.raises(InputError, match="an HCP layout was asked for, but this looks like a raw BIDS"):
        find_acquisitions(tmp_path / "a", "hcp")


def test_indexing_writes_nothing_into_the_dataset(tmp_path):
    """The dataset may be read-only (as root, permission bits would not show it: the tree is compared)."""
    root = simple_bids(tmp_path / "bids")
    before = {p.relative_to(root) for p in root.rglob("*")}
    dl = make_datalist(root, index_dir=tmp_path / "index")
    assert dl["numTraining"] + dl["numValidation"] + dl["numTest"] == 6
    assert {p.relative_to(root) for p in root.rglob("*")} == before
    assert list((tmp_path / "index").rglob("layout_index.sqlite"))


def test_two_gradient_files_applying_at_one_level_is_an_error(tmp_path):
    root = bids_root(tmp_path / "bids")
    write_gradients(root / "acq-hi_dwi")
    write_gradients(root / "dir-AP_dwi")
    write_dwi(root / "sub-01/dwi/sub-01_acq-hi_dir-AP_dwi.nii.gz")
    with pytest.raises(
        InputError, match="both acq-hi_dwi.bval and dir-AP_dwi.bval apply to sub-01_acq-hi_dir-AP_dwi"
    ):
        find_bids_acquisitions(root)


def test_cli_fa_of_a_bids_dataset_computes_masks_once(tmp_path, monkeypatch, capsys):
    from hcp_cam.synth.bids import generate_bids_dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ds = generate_bids_dataset(tmp_path / "bids", n_subjects=2, n_sessions=2, shape=(16, 18, 16), n_per_shell=6, progress=False)  # fmt: skip
    out = tmp_path / "fa"
    argv = ["fa", "--dataset-dir", str(ds.root), "--out-dir", str(out), "--no-progress", "--backend", "dipy"]
    assert main(argv) == 0
    fa = sorted(out.rglob("*_fa.nii.gz"))
    masks = sorted(out.rglob("*_mask.nii.gz"))
    assert [p.name for p in fa] == ["ses-01_dwi_fa.nii.gz", "ses-02_dwi_fa.nii.gz"] * 2
    assert [p.name for p in masks] == ["ses-01_dwi_mask.nii.gz", "ses-02_dwi_mask.nii.gz"] * 2
    assert list((tmp_path / "xdg" / "hcp-cam" / "bids-index").rglob("layout_index.sqlite"))
    stamps = [p.stat().st_mtime_ns for p in fa + masks]
    assert main(argv) == 0  # everything cached: nothing is rewritten
    assert [p.stat().st_mtime_ns for p in fa + masks] == stamps
    assert "4 FA maps in" in capsys.readouterr().out
