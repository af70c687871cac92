"""Provenance of a report: package versions, the hcp-cam source's git commit, the command, the date.

Versions come from the installed distributions' metadata (``importlib.metadata``): nothing heavy
is imported to learn them. They describe the environment that *wrote the report*; a run's own
record (``config.json``) is shown beside them by the report.
"""

from __future__ import annotations

import datetime as _dt
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "package_versions", "git_commit", "provenance"]

PACKAGES = (
    "hcp-cam",
    "monai",
    "torch",
    "pytorch-ignite",
    "nibabel",
    "dipy",
    "SimpleITK",
    "numpy",
    "pandas",
    "scipy",
    "matplotlib",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``{distribution: version}``; "not installed" for one that is missing."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the git work tree holding ``path`` (default: the hcp-cam source), with
    ``+dirty`` when it has uncommitted changes; ``None`` outside a work tree or without git."""
    here = Path(__file__).resolve()
    where = Path(path) if path is not None else here.parent
    try:
        top, head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split()  # fmt: skip
        # an installed copy inside some other repository (a venv in a project) is not that repository's code
        if path is None and not (Path(top) / "hcp_cam" / "reports" / here.name).resolve() == here:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return f"{head}+dirty" if dirty else head or None


def _shell_word(arg: str) -> str:
    """One argument as a user would type it: MONAI's ``--config_file "['a','b']"`` lists hold single
    quotes, which ``shlex.quote`` turns into ``'['"'"'a'"'"']'``; double quotes say the same, readably."""
    quoted = shlex.quote(arg)
    if quoted != arg and "'" in arg and not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return quoted


def provenance(command: list[str] | None = None) -> dict[str, Any]:
    """What wrote the report: ``date`` (ISO 8601, local time with offset), ``command``, ``python``,
    ``platform``, ``git_commit`` (of hcp-cam, when known) and ``packages``."""
    # orig_argv keeps the interpreter and "-m module" (e.g. python -m monai.bundle run inference ...)
    argv = (getattr(sys, "orig_argv", None) or sys.argv) if command is None else command
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(_shell_word(a) for a in [Path(argv[0]).name, *argv[1:]]) if argv else "",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "packages": package_versions(),
    }
