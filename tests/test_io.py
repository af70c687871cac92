"""Atomic writes: all or nothing under the final name, with the permissions of a plain open(); paths
recorded in run tables, read back from other folders."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hcp_cam.io import atomic_path, write_json_atomic


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_the_umask_mode_not_mkstemps_owner_only(tmp_path):
    out = write_json_atomic({"a": 1}, tmp_path / "sub" / "result.json")
    assert out.read_text() == '{\n    "a": 1\n}\n'
    assert _mode(out) == 0o666 & ~_umask()
    # with the usual umask 022 a collaborator (group, others) can read the result
    if _umask() == 0o022:
        assert _mode(out) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["result.json"]


def test_replaced_file_keeps_its_mode(tmp_path):
    out = tmp_path / "map.nii.gz"
    out.write_bytes(b"old")
    os.chmod(out, 0o640)
    with atomic_path(out) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new" and _mode(out) == 0o640


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "table.csv"
    out.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_paths_rename_all_or_none(tmp_path):
    from hcp_cam.io import atomic_paths

    outs = [tmp_path / "a.nii.gz", tmp_path / "new" / "deeper" / "b.nii.gz"]
    with pytest.raises(RuntimeError), atomic_paths(outs) as tmps:
        assert [t.parent for t in tmps] == [o.parent for o in outs]
        assert all(t.name.startswith(".") and t.name.endswith(".tmp.nii.gz") for t in tmps)
        tmps[0].write_bytes(b"first, complete")
        raise RuntimeError("the second could not be written")
    assert [p.name for p in tmp_path.iterdir()] == []  # no file, no temporary, no folder made for them
    with atomic_paths(outs) as tmps:
        for t in tmps:
            t.write_bytes(b"ok")
    assert all(o.read_bytes() == b"ok" for o in outs)
    assert sorted(p.name for p in outs[1].parent.iterdir()) == ["b.nii.gz"]


def test_check_output_path_leaves_nothing(tmp_path):
    from hcp_cam.errors import InputError
    from hcp_cam.io import check_not_inputs, check_output_path

    assert check_output_path(tmp_path / "x" / "y" / "fa.nii") == tmp_path / "x" / "y" / "fa.nii"
    assert list(tmp_path.iterdir()) == []  # the probe of a folder to be made leaves nothing
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="folder: .* is a file"):
        check_output_path(tmp_path / "file" / "fa.nii.gz")
    with pytest.raises(InputError, match="must end in .nii.gz or .nii"):
        check_output_path(tmp_path / "fa.nii.gz.bak")
    assert check_output_path(tmp_path / "t.json", suffixes=None).name == "t.json"
    link = tmp_path / "link.nii.gz"
    link.symlink_to(tmp_path / "file")
    with pytest.raises(InputError, match="overwrite the input mask"):
        check_not_inputs([link], {"DWI": tmp_path / "d.nii.gz", "mask": tmp_path / "file", "none": None})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "link.nii.gz"]


def test_recorded_path_is_found_from_the_run_folder_then_from_the_current_folder(tmp_path, monkeypatch):
    from hcp_cam.io import recorded_path

    run = tmp_path / "runs" / "a"
    (run / "cam").mkdir(parents=True)
    (run / "cam" / "x.nii.gz").write_bytes(b"")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "fa.nii.gz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert recorded_path("cam/x.nii.gz", run) == run / "cam" / "x.nii.gz"  # from the run folder
    assert recorded_path("cache/fa.nii.gz", run) == Path("cache/fa.nii.gz")  # from where the bundle ran
    assert recorded_path("missing.nii.gz", run) == run / "missing.nii.gz"  # for the error message
    assert recorded_path(tmp_path / "cache" / "fa.nii.gz", "elsewhere") == tmp_path / "cache" / "fa.nii.gz"
