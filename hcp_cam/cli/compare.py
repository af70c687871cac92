"""`hcp-cam compare RUN_DIR... --out PREFIX`: the network comparison table across bundle runs."""

from __future__ import annotations

import argparse

from hcp_cam.errors import ConfigError
from hcp_cam.reports.compare import FORMATS, compare_runs, format_markdown, write_comparison

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="table of networks: accuracy and AUC, mean ± std over folds",
        description=(
            "Summarise bundle runs into one row per network (runs with the same arch are folds): "
            "best validation accuracy, test slice and subject accuracy, subject AUC, majority baseline."
        ),
    )
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="bundle output folder (config.json, metrics/)"
    )
    p.add_argument(
        "--out", required=True, metavar="PREFIX", help="writes PREFIX.csv, PREFIX.md and/or PREFIX.html"
    )
    p.add_argument(
        "--format",
        default="csv,md",
        metavar="FMT",
        help=f"comma-separated, from {','.join(FORMATS)},html (default: csv,md; html: the self-contained comparison page)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats or any(f not in (*FORMATS, "html") for f in formats):
        raise ConfigError(f"--format {args.format!r}: choose one or more of {','.join(FORMATS)},html")
    table = compare_runs(args.run_dirs)
    if "html" in formats:  # refuse an unwritable page before the tables are written
        from hcp_cam.reports.html import check_output_path

        check_output_path(f"{args.out}.html")
    paths = write_comparison(table, args.out, [f for f in formats if f != "html"])
    if "html" in formats:
        from hcp_cam.reports.compare_report import write_compare_report

        paths.append(write_compare_report(args.run_dirs, f"{args.out}.html"))
    print(format_markdown(table), end="")
    for path in paths:
        print(f"wrote {path}")
    return 0
