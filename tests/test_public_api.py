"""Every module says what it offers: an ``__all__`` whose every name the module defines."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    names = []
    for path in sorted([*(REPO / "hcp_cam").rglob("*.py"), *(REPO / "transforms").rglob("*.py")]):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[0] == "transforms":
            parts = ["hcp_cam", *parts]
        if parts[-1] == "__main__":  # `python -m hcp_cam.cli`: a script, not an API
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _declares_all(module: str) -> bool:
    mod = importlib.import_module(module)
    tree = ast.parse(Path(mod.__file__).read_text())
    return any(
        isinstance(node, (ast.Assign, ast.AnnAssign))
        and any(
            getattr(t, "id", None) == "__all__"
            for t in getattr(node, "targets", [getattr(node, "target", None)])
        )
        for node in tree.body
    )


@pytest.mark.parametrize("module", _modules())
def test_module_declares_all_and_defines_each_name(module):
    assert _declares_all(module), f"{module} has no __all__"
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names {missing}, which it does not define"
