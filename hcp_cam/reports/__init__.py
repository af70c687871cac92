"""Reports of runs: the handlers that write a run's metrics and figures, result plots, the network
comparison table, CAM figures across runs (the gallery), and self-contained HTML pages (run, group,
compare)."""

from hcp_cam.reports.compare import compare_runs, format_markdown, read_run, write_comparison
from hcp_cam.reports.plots import image_grid, plot_pr_roc_confusion, plot_training_curves
from hcp_cam.reports.run_report import write_run_report

__all__ = [
    "compare_runs",
    "format_markdown",
    "read_run",
    "write_comparison",
    "image_grid",
    "plot_pr_roc_confusion",
    "plot_training_curves",
    "write_run_report",
]
