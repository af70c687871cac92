"""HTML building blocks of the reports: escaped text, tables, embedded figures, sections, the page.

Every page is one file: the stylesheet and scripts are inline, figures are ``data:`` URIs, and no
``src``/``href`` points outside the file (links are ``#fragment`` only). Writing goes through
:func:`write_page`, which checks the destination before the caller does any expensive work
(:func:`check_output_path`) and writes atomically.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hcp_cam.errors import InputError
from hcp_cam.io import atomic_path
from hcp_cam.reports.embed import asset_text, png_data_uri

__all__ = [
    "Section",
    "Markup",
    "esc",
    "fmt",
    "table",
    "frame_table",
    "key_values",
    "figure",
    "notes",
    "json_block",
    "inline_script",
    "render_page",
    "check_output_path",
    "write_page",
]


@dataclass
class Section:
    """One section of a page: ``id`` (the fragment the table of contents links to), title, HTML body."""

    id: str
    title: str
    body: str


def esc(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (integers as such, NaN/None as "n/a"); other values as text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3, cls: str = "", caption: str = ""
) -> str:
    """An HTML table; cells are formatted with :func:`fmt` and escaped (``Markup`` cells are kept)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for v in row:
            text = v.html if isinstance(v, Markup) else esc(fmt(v, digits))
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<div class="wide"><table{klass}>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


class Markup:
    """HTML that :func:`table` puts in a cell as is (already escaped by whoever made it)."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def frame_table(df: pd.DataFrame, digits: int = 3, max_rows: int | None = None, caption: str = "") -> str:
    """A DataFrame as :func:`table`; with ``max_rows`` only the first rows, saying how many were left out."""
    shown = df if max_rows is None else df.head(max_rows)
    rows = [[_plain(v) for v in r] for r in shown.itertuples(index=False)]
    out = table([str(c) for c in df.columns], rows, digits=digits, caption=caption)
    if max_rows is not None and len(df) > max_rows:
        out += f'<p class="note">First {max_rows} of {len(df)} rows.</p>'
    return out


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return v
    return v


def key_values(pairs: Iterable[tuple[str, Any]], digits: int = 3) -> str:
    """A two-column definition table (setting, value)."""
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{v.html if isinstance(v, Markup) else esc(fmt(v, digits))}</td></tr>"
        for k, v in pairs
    )
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def figure(path: str | os.PathLike, caption: str, alt: str | None = None, size: str = "") -> str:
    """A PNG embedded as a data URI, with its caption; ``size="small"`` caps its width (ROC, PR...)."""
    uri = png_data_uri(path)
    klass = f' class="{esc(size)}"' if size else ""
    return (
        f'<figure{klass}><img src="{uri}" alt="{esc(alt or caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def notes(items: Sequence[str], cls: str = "warning") -> str:
    """A list of warnings or notes (``cls``: ``warning`` or ``note``); empty string for none."""
    if not items:
        return ""
    return f'<ul class="{esc(cls)}">' + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def json_block(element_id: str, obj: Any) -> str:
    """JSON data in a ``<script type="application/json">`` element (``</`` escaped so it cannot close it)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def inline_script(code: str) -> str:
    """A ``<script>`` element holding ``code``, which must not close the element early."""
    if "</script" in code.lower():
        raise InputError("a script to inline contains '</script'")
    return f"<script>{code}</script>"


def render_page(title: str, subtitle: str, sections: Sequence[Section], scripts: Sequence[str] = ()) -> str:
    """The whole page: header, table of contents, sections, then the scripts (inline)."""
    toc = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="hcp-cam report"><title>{esc(title)}</title>'
        f"<style>{asset_text('assets/report.css')}</style></head>"
        f'<body><header><h1>{esc(title)}</h1><p class="subtitle">{esc(subtitle)}</p></header>'
        f'<nav aria-label="Contents"><h2>Contents</h2><ol>{toc}</ol></nav>'
        f"<main>{body}</main>{''.join(scripts)}</body></html>\n"
    )


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse an output path that is a folder or cannot be written, before any work is done.

    The parent folders are created if missing (as every writer of the project does). Writability is
    probed by creating and removing a temporary file beside ``path``: permission bits alone do not
    tell (root, read-only mounts).

    Raises:
        InputError: ``path`` is a folder, lies under a file, or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder; give a file name for the report, e.g. report.html", path)
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise InputError(f"cannot write the report: {above} is a file, not a folder", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".report-probe.", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"cannot write in the folder {path.parent} ({e.strerror or e})", path) from e
    return path


def write_page(text: str, path: str | os.PathLike) -> Path:
    """Write the page atomically (a temporary name beside ``path``, renamed when complete)."""
    path = check_output_path(path)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write the report: {e.strerror or e}", path) from e
    return path
