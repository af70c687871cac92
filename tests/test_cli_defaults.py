"""The documented defaults of `hcp-cam cam` and `hcp-cam datalist`: what a command line without the
option gets, and what its --help says. A changed default (the 20% box threshold) fails here."""

from __future__ import annotations

import inspect

import pytest

from hcp_cam.cli import build_parser

# what docs/ and the --help texts promise
CAM_DEFAULTS = {
    "threshold": 0.2,
    "method": "cam",
    "slices": "trained",
    "coverage": "all",
    "cam_class": "predicted",
    "no_figure": False,
    "layer": None,
    "config": None,
    "bvals": None,
    "bvecs": None,
    "mask": None,
    "roi": None,
    "device": None,
}
DATALIST_DEFAULTS = {
    "seed": 0,
    "val": 0.2,
    "test": 0.2,
    "folds": None,
    "fold": None,
    "groups": "young:8-15,old:25-75",
    "strict": False,
    "participants": None,
}


def _parsed(argv: list[str]) -> dict:
    return vars(build_parser().parse_args(argv))


def _help_of(command: str, dest: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return next(a.help for a in sub._actions if a.dest == dest)


def test_cam_defaults_on_a_minimal_command_line():
    args = _parsed(["cam", "fa.nii.gz", "--checkpoint", "model.pt", "--out", "cam/sub01"])
    assert {k: args[k] for k in CAM_DEFAULTS} == CAM_DEFAULTS


def test_datalist_defaults_on_a_minimal_command_line():
    args = _parsed(["datalist", "data", "--out", "datalist.json"])
    assert {k: args[k] for k in DATALIST_DEFAULTS} == DATALIST_DEFAULTS


@pytest.mark.parametrize(
    "command, dest, text",
    [
        ("cam", "threshold", "(0.2)"),
        ("cam", "cam_class", "'predicted' (default)"),
        ("cam", "slices", "(default;"),
        ("cam", "coverage", "(default;"),
        ("datalist", "seed", "(default: 0)"),
        ("datalist", "val", "(default: 0.2)"),
        ("datalist", "test", "(default: 0.2)"),
        ("datalist", "groups", "(default: young:8-15,old:25-75)"),
    ],
)
def test_help_states_the_default(command, dest, text):
    assert text in _help_of(command, dest)


def test_cam_library_defaults_match_the_command_line():
    """`hcp_cam.cam.single.cam_single` called from Python defaults as the CLI does."""
    from hcp_cam.cam.single import cam_single

    params = inspect.signature(cam_single).parameters
    assert params["threshold"].default == CAM_DEFAULTS["threshold"]
    assert params["method"].default == CAM_DEFAULTS["method"]
    assert params["slices"].default == CAM_DEFAULTS["slices"]
    assert params["coverage"].default == CAM_DEFAULTS["coverage"]
    assert params["cam_class"].default == CAM_DEFAULTS["cam_class"]
    assert params["figure"].default is True
