"""Data flows one way: a module of ``hcp_cam`` imports only from its own layer or the ones below
(docs/architecture.md). Imports inside functions count too: they are how a cycle is hidden."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# lowest first; a package named here covers its submodules
LAYERS = (
    (
        "hcp_cam.errors",
        "hcp_cam.io",
        "hcp_cam.lazy",
        "hcp_cam.output_sets",
        "hcp_cam.figure_io",
        "hcp_cam.fa_volume",
    ),
    ("hcp_cam.transforms",),
    ("hcp_cam.data", "hcp_cam.fa_maps", "hcp_cam.fa_cache", "hcp_cam.synth"),
    ("hcp_cam.networks",),
    ("hcp_cam.training",),
    ("hcp_cam.cam",),
    ("hcp_cam.group",),
    ("hcp_cam.reports",),
    ("hcp_cam.bundle", "hcp_cam.cli"),
)


def layer_of(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return None


def module_name(path: Path, repo: Path) -> str:
    rel = path.relative_to(repo).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "transforms":  # installed as hcp_cam.transforms
        parts = ["hcp_cam", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def upward_imports(repo: Path) -> list[str]:
    found = []
    for path in sorted([*(repo / "hcp_cam").rglob("*.py"), *(repo / "transforms").rglob("*.py")]):
        me = module_name(path, repo)
        mine = layer_of(me)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                theirs = layer_of(target)
                if mine is not None and theirs is not None and theirs > mine:
                    found.append(f"{path.relative_to(repo)}:{node.lineno}: {me} imports {target}")
    return found


def test_every_module_is_in_a_layer():
    paths = [*(REPO / "hcp_cam").rglob("*.py"), *(REPO / "transforms").rglob("*.py")]
    outside = [module_name(p, REPO) for p in paths if layer_of(module_name(p, REPO)) is None]
    assert outside == ["hcp_cam"], outside  # only the package root (version, errors re-exported)


def test_imports_go_downward_only():
    assert upward_imports(REPO) == []


def test_an_upward_import_inside_a_function_is_found(tmp_path):
    for name in ("hcp_cam/training", "hcp_cam/reports", "transforms"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "hcp_cam/reports/plots.py").write_text("import numpy\n")
    (tmp_path / "hcp_cam/training/handlers.py").write_text(
        "def done():\n    from hcp_cam.reports.plots import plot\n"
    )
    assert upward_imports(tmp_path) == [
        "hcp_cam/training/handlers.py:2: hcp_cam.training.handlers imports hcp_cam.reports.plots"
    ]
