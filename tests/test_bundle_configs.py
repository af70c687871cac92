"""The bundle configs are wiring: readable expressions, overlays that state only what differs.

Every check parses the real files with MONAI's ``ConfigParser`` (the bundle runner's parser).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from bundle_helpers import CONFIGS
from monai.bundle import ConfigParser
from monai.data import MetaTensor

CONFIG_FILES = sorted(CONFIGS.glob("*.json"))
OVERLAYS = ("evaluate.json", "inference.json", "multi_gpu_train.json")
MAX_EXPRESSION = 120
# `@transforms[0]`, `@train#handlers#2`: a component picked by its position in a list
POSITIONAL = re.compile(r"@[\w#]+(\[\s*-?\d+\s*\]|#\d+\b)")


def _strings(node, where="") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{where}#{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{where}[{i}]")
    elif isinstance(node, str):
        yield where, node


def _expressions(path: Path) -> list[tuple[str, str]]:
    return [(w, s) for w, s in _strings(json.loads(path.read_text())) if s.startswith("$")]


def lint(path: Path) -> list[str]:
    """What is wrong with the wiring of one config file (empty when nothing is)."""
    problems = []
    for where, expr in _expressions(path):
        if re.search(r"\blambda\b", expr):
            problems.append(f"{path.name}:{where}: a lambda")
        if POSITIONAL.search(expr):
            problems.append(f"{path.name}:{where}: positional indexing {POSITIONAL.search(expr).group(0)}")
        if len(expr) > MAX_EXPRESSION and not expr.startswith("$import "):
            problems.append(f"{path.name}:{where}: a {len(expr)}-character expression")
    for where, text in _strings(json.loads(path.read_text())):
        if text.startswith("@") and POSITIONAL.search(text):
            problems.append(f"{path.name}:{where}: positional reference {text}")
    return problems


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_is_wiring_only(path):
    assert lint(path) == []


@pytest.mark.parametrize(
    "expression, problem",
    [
        ("$lambda engine: engine.state.metrics['val_accuracy']", "a lambda"),
        ("$@transforms[0]", "positional indexing @transforms[0]"),
        ("$@train#handlers#2.attach(@x)", "positional indexing @train#handlers#2"),
        ("$" + "x" * MAX_EXPRESSION, f"a {MAX_EXPRESSION + 1}-character expression"),
    ],
)
def test_lint_finds_each_lapse(tmp_path, expression, problem):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"key": {"nested": [expression]}}))
    assert lint(path) == [f"c.json:key#nested[0]: {problem}"]


def test_overlays_state_only_what_differs():
    train = set(json.loads((CONFIGS / "train.json").read_text()))
    allowed = {
        "evaluate.json": {"_comment"},
        "inference.json": {"_comment"},
        # DDP: the device of each rank, the wrapped network, and leaving the process group
        "multi_gpu_train.json": {"_comment", "device", "network", "torch_device", "finalize"},
    }
    for name in OVERLAYS:
        overlay = {
            k for k in json.loads((CONFIGS / name).read_text()) if "#" not in k and not k.startswith("+")
        }
        assert overlay & train <= allowed[name], f"{name} restates {sorted(overlay & train - allowed[name])}"


def _parser(configs: Path, *names: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(configs / n) for n in names])
    parser.read_meta(str(configs / "metadata.json"))
    parser["bundle_root"] = str(configs.parent)
    return parser


@pytest.mark.parametrize("overlay", ["evaluate.json", "inference.json"])
def test_evaluate_and_inference_inherit_a_setting_changed_only_in_train(tmp_path, overlay):
    configs = tmp_path / "bundle" / "configs"
    shutil.copytree(CONFIGS, configs)
    train = json.loads((configs / "train.json").read_text())
    assert (train["network_width"], train["image_size"], train["amp"]) != (0.5, 80, False)
    train.update({"network_width": 0.5, "image_size": 80, "amp": False})
    (configs / "train.json").write_text(json.dumps(train))

    parser = _parser(configs, "train.json", overlay)
    net = parser.get_parsed_content("network_def")
    assert net.classifier.in_features == int(1024 * 0.5)
    assert parser.get_parsed_content("image_size") == 80
    assert parser.get_parsed_content("use_amp") is False
    eval_chain = parser.get_parsed_content("validate#preprocessing")
    image = torch.rand(1, 30, 20)
    out = eval_chain({"image": MetaTensor(image), "mask": MetaTensor(torch.ones_like(image))})
    assert tuple(out["image"].shape) == (1, 80, 80)
