"""Several outputs written all or none (hcp_cam.output_sets): staged in a hidden folder, moved into
place together, the earlier files back in place when anything fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hcp_cam.errors import InputError
from hcp_cam.output_sets import check_outputs, staged_outputs


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _earlier(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("s_a.txt", "s_b.txt", "s_old.png"):
        (folder / name).write_text(f"earlier {name}")
    os.chmod(folder / "s_a.txt", 0o640)
    return _tree(folder)


def test_success_puts_every_file_in_place_and_drops_the_stale_ones(tmp_path):
    _earlier(tmp_path)
    outputs = {"a": tmp_path / "s_a.txt", "b": tmp_path / "s_b.txt", "c": tmp_path / "s_c.txt"}
    with staged_outputs(outputs, stale=[tmp_path / "s_old.png"]) as tmp:
        assert set(tmp) == set(outputs) and all(t.name == outputs[k].name for k, t in tmp.items())
        assert all(t.parent.name.startswith(".hcp-cam-staging-") for t in tmp.values())
        for key, path in tmp.items():
            path.write_text(f"new {key}")
        assert (tmp_path / "s_a.txt").read_text() == "earlier s_a.txt"  # nothing moved before the end
    assert _tree(tmp_path) == {"s_a.txt": b"new a", "s_b.txt": b"new b", "s_c.txt": b"new c"}
    assert (tmp_path / "s_a.txt").stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode


def test_an_error_in_the_block_leaves_the_earlier_files_and_no_staging_folder(tmp_path):
    before = _earlier(tmp_path)
    outputs = {"a": tmp_path / "s_a.txt", "b": tmp_path / "s_b.txt"}
    with (
        pytest.raises(RuntimeError, match="half-way"),
        staged_outputs(outputs, [tmp_path / "s_old.png"]) as tmp,
    ):
        tmp["a"].write_text("new a")
        raise RuntimeError("failed half-way")
    assert _tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    # a block that forgets an output is an error too, and changes nothing
    with pytest.raises(FileNotFoundError, match="s_b.txt was not written"), staged_outputs(outputs) as tmp:
        tmp["a"].write_text("new a")
    assert _tree(tmp_path) == before


def test_a_failed_rename_puts_the_earlier_files_back(tmp_path, monkeypatch):
    before = _earlier(tmp_path)
    outputs = {"a": tmp_path / "s_a.txt", "b": tmp_path / "s_b.txt"}
    real_replace, calls = os.replace, []

    def replace(src, dst):  # the disk fails on the second new file moved into place
        calls.append(dst)
        if str(dst) == str(outputs["b"]) and Path(src).parent.name.startswith(".hcp-cam-staging-"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"), staged_outputs(outputs) as tmp:
        for key, path in tmp.items():
            path.write_text(f"new {key}")
    assert outputs["a"] in calls  # the first one had been moved in, and was taken back
    assert _tree(tmp_path) == before


def test_folders_made_for_a_failed_run_go_again(tmp_path):
    outputs = {"a": tmp_path / "new" / "deeper" / "s_a.txt"}
    with pytest.raises(RuntimeError), staged_outputs(outputs):
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with staged_outputs(outputs) as tmp:
        tmp["a"].write_text("x")
    assert outputs["a"].read_text() == "x"


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    (tmp_path / "s_a.txt").mkdir()
    with pytest.raises(InputError, match="this output is an existing folder"):
        check_outputs([tmp_path / "s_a.txt"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=f"--out lies under {blocker}, which is a file"):
        check_outputs([blocker / "sub" / "s.json"])
    with (
        pytest.raises(InputError, match="this output is an existing folder"),
        staged_outputs({"a": tmp_path / "s_a.txt"}),
    ):
        pass
    with (
        pytest.raises(ValueError, match="share one folder"),
        staged_outputs({"a": tmp_path / "x", "b": tmp_path / "d" / "y"}),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "s_a.txt"]


def test_staging_folders_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    import socket
    import subprocess
    import sys

    host = socket.gethostname().replace("-", "_")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    killed = tmp_path / f".hcp-cam-staging-{host}-{dead_pid}-abc"
    live = tmp_path / f".hcp-cam-staging-{host}-{os.getpid()}-def"
    elsewhere = tmp_path / f".hcp-cam-staging-otherhost-{dead_pid}-ghi"
    for d in (killed, live, elsewhere):
        d.mkdir()
        (d / "s_a.txt").write_bytes(b"")  # the 0-byte file a kill leaves
    with staged_outputs({"a": tmp_path / "s_a.txt"}) as tmp:
        tmp["a"].write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, "s_a.txt"])
