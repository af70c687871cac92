"""Sections every report ends with: provenance (what wrote the page, from which inputs)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hcp_cam.reports.embed import niivue_info
from hcp_cam.reports.html import Section, esc, key_values
from hcp_cam.reports.provenance import provenance

__all__ = ["provenance_section", "file_listing", "pre_json"]


def pre_json(obj: Any) -> str:
    """``obj`` as indented JSON in a ``<pre>`` block."""
    return f"<pre>{esc(json.dumps(obj, indent=2, default=str))}</pre>"


def file_listing(root: Path, limit: int = 400) -> list[tuple[str, int]]:
    """``(relative path, bytes)`` of the files under ``root``, sorted, hidden and cache folders left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            out.append((p.relative_to(root).as_posix(), p.stat().st_size))
            if len(out) >= limit:
                return out
    return out


def provenance_section(
    inputs: Path | Sequence[Path],
    configs: Mapping[str, Any] | None = None,
    command: list[str] | None = None,
) -> Section:
    """Who wrote the page and from what: date, command, hcp-cam commit, package versions, the
    recorded configuration(s) of the inputs, and the input folders' file lists."""
    prov = provenance(command)
    nv = niivue_info()
    pairs = [
        ("Written", prov["date"]),
        ("Command", prov["command"]),
        ("hcp-cam git commit", prov["git_commit"] or "unknown (not a git checkout)"),
        ("Python", prov["python"]),
        ("Platform", prov["platform"]),
        ("Viewer", f"NiiVue {nv['version']} ({nv['license']}), sha256 {nv['sha256'][:16]}…"),
    ]
    pairs += [(f"{name}", version) for name, version in prov["packages"].items()]
    body = (
        '<p class="note">Versions are those of the environment that wrote this page; the configuration below is '
        "what the run recorded when it ran.</p>" + key_values(pairs)
    )
    for name, cfg in (configs or {}).items():
        body += f"<h3>{esc(name)}</h3>" + (pre_json(cfg) if cfg is not None else "<p>not found</p>")
    roots = [inputs] if isinstance(inputs, Path) else list(inputs)
    for root in roots:
        files = file_listing(root)
        rows = "".join(f"<tr><td>{esc(p)}</td><td class='num'>{n:,}</td></tr>" for p, n in files)
        body += (
            f"<details><summary>Files in {esc(root)} ({len(files)})</summary>"
            f"<table><thead><tr><th>file</th><th>bytes</th></tr></thead><tbody>{rows}</tbody></table></details>"
        )
    return Section("provenance", "Provenance", body)
