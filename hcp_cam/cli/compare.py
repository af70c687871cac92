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
            "best validation accuracy, test slice and subject accuracy, subject AUC, majority baseline. "
            "Runs with cam/faithfulness.csv add PREFIX_faithfulness.csv/.md (deletion and insertion areas "
            "per network and map); runs with CAMs of common subjects add PREFIX_repeatability.csv/.md "
            "(top-10%% Dice and Spearman of each subject's maps within and between networks)."
        ),
    )
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="bundle output folder (config.json, metrics/)"
    )
    p.add_argument(
        "--out", required=True, metavar="PREFIX", help="writes PREFIX.csv, PREFIX.md and/or PREFIX.html"
    )
    p.add_argument(
        "--no-explanations",
        action="store_true",
        help="skip the faithfulness and repeatability tables (PREFIX_faithfulness, PREFIX_repeatability)",
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
    if not args.no_explanations:
        paths += _explanation_tables(args.run_dirs, args.out)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _explanation_tables(run_dirs: list[str], prefix: str) -> list:
    from hcp_cam.reports.explanations import (
        faithfulness_table,
        format_table_markdown,
        repeatability_table,
        write_table,
    )

    paths = []
    for kind, make in (("faithfulness", faithfulness_table), ("repeatability", repeatability_table)):
        table = make(run_dirs)
        if len(table):
            print(f"\n{kind}:\n" + format_table_markdown(table, kind), end="")
            paths += write_table(table, f"{prefix}_{kind}", kind)
    return paths
