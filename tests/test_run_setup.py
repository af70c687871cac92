"""Unit tests of what a bundle run settles first: flags, the bundle folder, the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hcp_cam.errors import ConfigError
from hcp_cam.training.run_setup import (
    check_image_size,
    default_cache_dir,
    default_output_dir,
    flag,
    optional,
    prepare_output_dir,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), ("true", True), ("False", False), ("no", False), ("1", True), (0, False)],
)
def test_flag_parses_command_line_booleans(value, expected):
    # fire hands `--resume false` over as the string "false", which Python takes as true
    assert flag(value) is expected


def test_flag_rejects_other_values_and_none_unless_allowed():
    with pytest.raises(ConfigError, match="resume must be true or false"):
        flag("maybe", "resume")
    with pytest.raises(ConfigError):
        flag(None)
    assert flag("null", allow_none=True) is None
    assert flag(None, allow_none=True) is None


def test_optional_maps_null_strings_to_none():
    assert optional("null") is None and optional("None") is None and optional("") is None
    assert optional("young:8-15,old:25-75") == "young:8-15,old:25-75"
    assert optional(3) == 3


def test_run_folder_of_another_configuration_is_refused(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(out, {"arch": "alexnet", "seed": 0, "epochs": 2})
    # the same configuration (epochs is not part of it) is accepted again
    prepare_output_dir(out, {"arch": "alexnet", "seed": 0, "epochs": 5})
    assert json.loads((out / "config.json").read_text())["epochs"] == 5
    with pytest.raises(ConfigError, match=r"arch: 'alexnet' -> 'vgg16'"):
        prepare_output_dir(out, {"arch": "vgg16", "seed": 0})
    with pytest.raises(ConfigError, match="cannot be resumed"):
        prepare_output_dir(out, {"arch": "vgg16", "seed": 0}, resume=True)
    assert json.loads((out / "config.json").read_text())["arch"] == "alexnet"


def test_checking_a_run_folder_writes_nothing_until_recorded(tmp_path):
    from hcp_cam.training.run_setup import record_run_config

    out = tmp_path / "run"
    prepare_output_dir(out, {"arch": "alexnet"}, write=False)
    assert out.is_dir() and not (out / "config.json").exists()
    record_run_config(out, {"arch": "alexnet"})
    assert json.loads((out / "config.json").read_text())["arch"] == "alexnet"


def test_default_output_dir_names_the_fold_only_for_k_fold_runs(tmp_path):
    bundle, work = tmp_path / "bundle", tmp_path / "work"
    assert default_output_dir(bundle, "vgg16", base=work) == str(work / "runs" / "vgg16")
    assert default_output_dir(bundle, "vgg16", num_folds="3", fold="2", base=work) == str(
        work / "runs" / "vgg16_fold2"
    )
    assert default_output_dir(bundle, "vgg16", num_folds=1, fold=2, base=work) == str(work / "runs" / "vgg16")


@pytest.mark.parametrize("value", [-5, 0, 64.5, "96", True])
def test_image_size_that_is_not_a_positive_whole_number_names_the_key(value):
    """`--image_size -5` was reported as "too small for alexnet", as if a bigger negative would do."""
    from hcp_cam.networks import get_network

    network = get_network("alexnet", width=0.125)
    with pytest.raises(ConfigError) as err:
        check_image_size(network, value)
    assert str(err.value) == (
        f"image_size must be a whole number of voxels >= 1 (the side slices are resized to), got {value!r}; "
        f"use --image_size {network.min_input_size} or more"
    )
    assert check_image_size(network, network.min_input_size) is network


def test_default_output_dir_is_under_the_working_directory_never_the_bundle(tmp_path, monkeypatch):
    bundle, work = tmp_path / "bundle", tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_output_dir(bundle, "alexnet") == str(work / "runs" / "alexnet")
    (bundle / "configs").mkdir(parents=True)
    monkeypatch.chdir(bundle / "configs")
    with pytest.raises(ConfigError, match="would lie inside the bundle folder"):
        default_output_dir(bundle, "alexnet")
    assert not (bundle / "configs" / "runs").exists()


def test_default_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "hcp-cam")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG rule: relative paths are ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "hcp-cam")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "hcp-cam")
