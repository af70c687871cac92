"""Helpers for the report tests: a real headless Chromium driven by Playwright, and page parsing.

The browser is Debian's ``chromium`` (``.ci/run`` installs it; ``HCP_CAM_CHROMIUM`` points at
another build). WebGL2 runs on the CPU through SwiftShader. Every console message, page error and
network request of a page is recorded so that tests can assert there were none to speak of.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHROMIUM_ARGS",
    "chromium_path",
    "OpenPage",
    "open_page",
    "pixels",
    "colour_counts",
    "References",
    "external_references",
    "page_scenes",
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
]


def chromium_path() -> str:
    """The Chromium to drive; a clear failure (not a skip) when none is installed."""
    path = os.environ.get("HCP_CAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        raise RuntimeError(
            "the report tests need a Chromium: apt-get install -y chromium (Debian), or set HCP_CAM_CHROMIUM"
        )
    return path


@dataclass
class OpenPage:
    """A page loaded in the browser, with what it logged and requested."""

    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def viewer(self, element_id: str = "nv"):
        return self.page.locator(f"#{element_id}")

    def wait_ready(self, element_id: str = "nv", scene: str | None = None, timeout: float = 60_000) -> str:
        """Wait until the viewer drew a scene (``scene`` if given); return its state."""
        cond = (
            f"(() => {{ const v = document.getElementById('{element_id}'); if (!v) return false;"
            f" if (v.dataset.state === 'error') return true;"
            f" return v.dataset.state === 'ready' && ({json.dumps(scene)} === null || v.dataset.scene === {json.dumps(scene)}); }})()"
        )
        self.page.wait_for_function(cond, timeout=timeout)
        self.page.wait_for_timeout(300)  # one more frame after the last draw call
        return self.viewer(element_id).get_attribute("data-state")

    def location(self, element_id: str = "nv") -> dict:
        return json.loads(self.viewer(element_id).get_attribute("data-location") or "null")

    def move_to(self, mm, element_id: str = "nv") -> dict:
        """Put the cursor at world ``mm`` (RAS) through NiiVue's API, as a click would; return the readout."""
        self.page.evaluate(
            "([id, mm]) => { const nv = window.hcpViewers[id].nv; nv.scene.crosshairPos = nv.mm2frac(mm);"
            " nv.updateGLVolume(); nv.createOnLocationChange(); }",
            [element_id, [float(x) for x in mm]],
        )
        self.page.wait_for_timeout(300)
        return self.location(element_id)

    def canvas_png(self, element_id: str = "nv", crosshair: bool = False) -> bytes:
        """The canvas as PNG; without the crosshair by default (its cyan would count as a colour)."""
        width = "([id, w]) => { const nv = window.hcpViewers[id].nv; const old = nv.opts.crosshairWidth;"
        width += " nv.setCrosshairWidth(w); return old; }"
        old = None if crosshair else self.page.evaluate(width, [element_id, 0])
        if old is not None:
            self.page.wait_for_timeout(200)
        try:
            return self.page.locator(f"#{element_id} canvas").screenshot()
        finally:
            if old is not None:
                self.page.evaluate(width, [element_id, old])


def open_page(browser, path: Path, width: int = 1300, height: int = 1000) -> OpenPage:
    """Open ``path`` (``file://``) in a new page, recording console, errors and requests."""
    page = browser.new_page(viewport={"width": width, "height": height})
    out = OpenPage(page)
    page.on("console", lambda m: out.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: out.errors.append(str(e)))
    page.on("request", lambda r: out.requests.append(r.url))
    page.goto(Path(path).resolve().as_uri(), wait_until="load")
    return out


def pixels(png: bytes) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a PNG screenshot."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def colour_counts(rgb: np.ndarray, planes_only: bool = True) -> dict[str, int]:
    """Pixels by kind (with ``planes_only``, above the colour bar that NiiVue draws along the bottom
    ~12% of the canvas, so that the bar's own colours do not count): ``background`` (black), ``grey`` (FA: r = g = b, not black), ``warm`` (the
    CAM's orange-yellow: red high, blue low), ``cool`` (a negative map's blue-teal),
    ``green`` (the box), ``blue`` (the ground-truth region)."""
    if planes_only:
        rgb = rgb[: int(rgb.shape[0] * 0.88)]
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    spread = np.max(rgb, axis=-1).astype(int) - np.min(rgb, axis=-1).astype(int)
    return {
        "background": int(((r < 8) & (g < 8) & (b < 8)).sum()),
        "grey": int(((spread < 10) & (r > 40)).sum()),
        "warm": int(((r > 180) & (g > 60) & (b < 90) & (r > g)).sum()),
        "cool": int(((b > 120) & (b > r + 100)).sum()),
        "green": int(((g > 150) & (r < 140) & (b < 100)).sum()),
        "blue": int(((b > 150) & (r < 80) & (g < 80)).sum()),
    }


class References(HTMLParser):
    """Every ``src``, ``href``, ``srcset``, ``data``, ``poster`` and ``action`` attribute, and ``url(...)`` in styles."""

    ATTRS = {"src", "href", "srcset", "data", "poster", "action", "xlink:href"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_style = tag == "style"
        for k, v in attrs:
            if k in self.ATTRS and v is not None:
                self.refs.append((tag, k, v))
            if k == "style" and v and "url(" in v:
                self.refs += [(tag, "style", u) for u in re.findall(r"url\(([^)]*)\)", v)]

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.refs += [("style", "url", u) for u in re.findall(r"url\(([^)]*)\)", data)]
            self.refs += [("style", "@import", m) for m in re.findall(r"@import\s+([^;]+);", data)]


def external_references(html_text: str) -> list[tuple[str, str, str]]:
    """References that would leave the file: anything but ``data:`` URIs and ``#fragment`` links."""
    parser = References()
    parser.feed(html_text)
    return [(t, k, v[:80]) for t, k, v in parser.refs if not (v.startswith("data:") or v.startswith("#"))]


def page_scenes(html_text: str, element_id: str = "nv") -> tuple[list[dict], dict[str, str]]:
    """The viewer's scene list and its base64 volumes (element id -> text), read from the page source."""
    m = re.search(
        rf'<script type="application/json" id="{element_id}-scenes">(.*?)</script>', html_text, re.S
    )
    if m is None:
        return [], {}
    scenes = json.loads(m.group(1).replace("<\\/", "</"))
    blobs = dict(
        re.findall(rf'<script type="text/plain" id="({element_id}-vol-\d+)">(.*?)</script>', html_text, re.S)
    )
    return scenes, blobs
