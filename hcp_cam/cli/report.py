"""`hcp-cam report PATH [PATH ...] [--out FILE]`: one self-contained HTML page to read and send.

- one bundle run folder: its report (``RUN/report.html`` by default);
- one group output (``hcp-cam group --out OUT``): the group maps' report (``OUT/report.html``);
- several run folders: the comparison page (``--out`` required).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hcp_cam.errors import ConfigError, InputError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML page of a run, a group output, or several runs",
        description=(
            "Write one HTML file with everything inline (styles, scripts, figures, 8-bit copies of the volumes "
            "for an interactive NiiVue viewer): it opens offline, from a USB stick or an e-mail attachment. "
            "A run folder gives its summary, curves, test metrics, per-subject CAMs and provenance, writing "
            "what exists and listing what is missing; a group output its maps over the template and its tables; "
            "several run folders a comparison page."
        ),
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="a run folder, a group output folder, or several run folders"
    )
    p.add_argument(
        "--out", metavar="FILE", help="the page to write (default: PATH/report.html for one folder)"
    )
    p.add_argument(
        "--viewer-subjects",
        type=int,
        metavar="N",
        help="run page: put the volumes of the first N test acquisitions in the viewer (default: all; 0: none; "
        "~2 MB each at HCP size)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    if args.viewer_subjects is not None and args.viewer_subjects < 0:
        raise ConfigError(f"--viewer-subjects {args.viewer_subjects}: give 0 or more")
    for p in paths:
        if not p.is_dir():
            raise InputError("folder not found", p)
    if len(paths) > 1:
        if args.out is None:
            raise ConfigError("--out FILE is required for several run folders (the comparison page)")
        from hcp_cam.reports.compare_report import write_compare_report

        out = write_compare_report(paths, args.out)
    else:
        from hcp_cam.reports.group_report import is_group_folder, write_group_report
        from hcp_cam.reports.run_report import write_run_report

        if is_group_folder(paths[0]):
            out = write_group_report(paths[0], args.out)
        else:
            out = write_run_report(paths[0], args.out, viewer_subjects=args.viewer_subjects)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
