"""Figures as files: a matplotlib figure on its own Agg canvas, written as PNG atomically.

Built on :class:`matplotlib.figure.Figure`, never through ``pyplot``: no global backend, no display, no
figure left open. The CAM figures (:mod:`hcp_cam.cam.figures`) and the result plots
(:mod:`hcp_cam.reports.plots`) both draw on these.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hcp_cam.io import atomic_path

__all__ = ["new_figure", "save_figure"]


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically; ``metadata`` goes into PNG text chunks."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=metadata)
    return Path(path)
