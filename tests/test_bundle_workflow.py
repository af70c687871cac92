"""The bundle's view of the MONAI workflow running it: its folder, and the keys given on its command line.

Each test runs a real config through ``monai.bundle.run`` in this process (the same code path as
``python -m monai.bundle run``), from a working directory that is not the bundle's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_helpers import bundle_env
from monai.bundle import run

from hcp_cam.bundle import bundle_root, user_error
from hcp_cam.errors import ConfigError


def _bundle(tmp_path: Path, extra: dict | None = None) -> Path:
    """A bundle folder whose ``run`` writes its ``bundle_root`` and ``image_size`` to ``out.json``."""
    root = tmp_path / "copied bundle"
    (root / "configs").mkdir(parents=True)
    config = {
        "imports": ["$import json", "$import hcp_cam", "$import hcp_cam.bundle"],
        "bundle_root": "$hcp_cam.bundle.bundle_root()",
        "image_size": 96,
        "out": str(tmp_path / "out.json"),
        "initialize": ["$hcp_cam.bundle.check_override_keys()"],
        "run": ["$open(@out, 'w').write(json.dumps({'root': @bundle_root, 'size': @image_size}))"],
        **(extra or {}),
    }
    (root / "configs" / "train.json").write_text(json.dumps(config))
    (root / "configs" / "metadata.json").write_text("{}")
    (root / "train.json").symlink_to("configs/train.json")
    return root


def _ran(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out.json").read_text())


@pytest.mark.parametrize("entry", ["configs/train.json", "train.json"])
def test_bundle_root_is_the_config_files_bundle_from_any_working_directory(tmp_path, monkeypatch, entry):
    root = _bundle(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run(config_file=str(root / entry), logging_file=False)
    assert _ran(tmp_path)["root"] == str(root)


def test_bundle_root_of_a_relative_config_path_is_absolute(tmp_path, monkeypatch):
    root = _bundle(tmp_path)
    monkeypatch.chdir(tmp_path)
    run(config_file=f"{root.name}/configs/train.json", logging_file=False)
    assert _ran(tmp_path)["root"] == str(root)


def test_bundle_root_outside_a_workflow_is_the_default_or_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bundle_root() == str(tmp_path)
    assert bundle_root(default=tmp_path / "b") == str(tmp_path / "b")


def test_known_override_runs(tmp_path):
    root = _bundle(tmp_path)
    run(config_file=str(root / "configs" / "train.json"), logging_file=False, image_size=128)
    assert _ran(tmp_path)["size"] == 128


def test_unknown_override_is_refused_with_the_closest_key_before_anything_runs(tmp_path):
    root = _bundle(tmp_path)
    with pytest.raises(RuntimeError) as info:
        run(config_file=str(root / "configs" / "train.json"), logging_file=False, image_sise=128)
    err = user_error(info.value)
    assert isinstance(err, ConfigError)
    assert str(err) == "--image_sise is not a key of this bundle; did you mean --image_size?"
    assert not (tmp_path / "out.json").exists()


def test_nested_override_of_a_known_key_runs(tmp_path):
    # MONAI itself refuses a nested key whose first part is unknown (KeyError "query key")
    root = _bundle(tmp_path, {"net": {"width": 1}})
    run(config_file=str(root / "configs" / "train.json"), logging_file=False, **{"net#width": 2})
    assert _ran(tmp_path)["size"] == 96


def test_key_of_an_overlay_file_is_known(tmp_path):
    root = _bundle(tmp_path)
    overlay = root / "configs" / "overlay.json"
    overlay.write_text(json.dumps({"cam_method": "cam"}))
    files = [str(root / "configs" / "train.json"), str(overlay)]
    run(config_file=files, logging_file=False, cam_method="gradcam")
    with pytest.raises(RuntimeError):
        run(config_file=files[:1], logging_file=False, cam_method="gradcam")


def test_bundle_command_line_error_is_one_line_and_exit_2(tmp_path):
    root = _bundle(
        tmp_path, {"initialize": ["$hcp_cam.bundle.report_errors()", "$hcp_cam.bundle.check_override_keys()"]}
    )
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(root / "train.json")]
    proc = subprocess.run(
        [*cmd, "--image_sise", "128"], env=bundle_env(), capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert lines == [
        "cam_dmri bundle: error: --image_sise is not a key of this bundle; did you mean --image_size?"
    ]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.json").exists()
