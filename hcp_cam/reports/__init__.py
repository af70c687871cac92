"""Reports of runs: the handlers that write a run's metrics and figures, result plots, the network
comparison table, and CAM figures across runs (the gallery)."""

from hcp_cam.reports.compare import compare_runs, format_markdown, read_run, write_comparison
from hcp_cam.reports.plots import image_grid, plot_pr_roc_confusion, plot_training_curves

__all__ = [
    "compare_runs",
    "format_markdown",
    "read_run",
    "write_comparison",
    "image_grid",
    "plot_pr_roc_confusion",
    "plot_training_curves",
]
