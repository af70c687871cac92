"""`hcp-cam figures RUN_DIR... --out DIR`: CAM figures across networks and per age group.

Examples::

    hcp-cam figures runs/alexnet_fold0 runs/vgg16_fold0 --out figures --subject 214121
    hcp-cam figures runs/alexnet_fold0 --out figures --split test

Writes ``DIR/networks_<subject>.png`` (one row per run, when several runs are given) and, for each
run, ``DIR/cohort_<arch>[_fold<k>].png`` with ``DIR/cohort_<arch>[_fold<k>]_<group>.nii.gz`` (the
group-mean CAM on the FA grid). Every input is read before the first file is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "figures",
        help="CAM figures from bundle runs: one subject across networks, mean CAM per group",
        description="From bundle run folders after inference (config.json, cam/summary.csv, "
        "cam/<subject>/<acquisition>_cam01.nii.gz): one subject's CAM by network (several runs) and "
        "each run's mean CAM per group (needs the acquisitions on one grid). Bad input: exit 2.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="bundle output folder with cam/summary.csv")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--subject", help="subject of the network figure (default: first common to all runs)")
    p.add_argument("--acquisition", help="acquisition of that subject (default: first common to all runs)")
    p.add_argument("--split", help="cohort means over this split only (default: every row of the summary)")
    p.set_defaults(func=run)


def _cohort_names(runs) -> list[str]:
    """``cohort_<arch>[_fold<k>]``: the fold when the run is one of several folds; unique names."""
    from hcp_cam.reports.gallery import safe_name

    archs = [r.arch for r in runs]
    names = []
    for r in runs:
        name = f"cohort_{safe_name(r.arch)}"
        if r.fold is not None and ((r.num_folds or 1) > 1 or archs.count(r.arch) > 1):
            name += f"_fold{r.fold}"
        names.append(name)
    return [
        f"{n}_{safe_name(r.run_dir.name)}" if names.count(n) > 1 else n
        for n, r in zip(names, runs, strict=True)
    ]


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `hcp-cam --help` must not wait for torch and MONAI
    from hcp_cam.reports.gallery import (
        load_cohort,
        load_network_comparison,
        safe_name,
        write_cohort,
        write_network_comparison,
    )

    out = Path(args.out)
    # read and check everything first: a bad run must not leave half of the figures behind
    comparison = None
    if len(args.run_dirs) > 1:
        comparison = load_network_comparison(args.run_dirs, args.subject, args.acquisition)
    cohorts = [load_cohort(d, args.split) for d in args.run_dirs]
    written = []
    if comparison is not None:
        written.append(
            write_network_comparison(comparison, out / f"networks_{safe_name(comparison.subject)}.png")
        )
    for data, name in zip(cohorts, _cohort_names([c.run for c in cohorts]), strict=True):
        written.extend(write_cohort(data, out / f"{name}.png"))
    for path in written:
        print(path)
    return 0
