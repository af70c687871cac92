"""Atomic writes: all or nothing under the final name, with the permissions of a plain open()."""

from __future__ import annotations

import os
import stat

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
