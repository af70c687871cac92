"""Reports across runs: result plots and the network comparison table."""

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
