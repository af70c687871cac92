"""`hcp-cam datalist`: discover a dataset, label subjects by age group, split by subject, write JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from hcp_cam.data import DEFAULT_GROUPS, SPLITS, make_datalist, split_summary, write_datalist
from hcp_cam.data.cache import user_cache_dir
from hcp_cam.data.layouts import DATASET_LAYOUTS
from hcp_cam.errors import InputError
from hcp_cam.output_sets import check_outputs

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "datalist",
        help="write a MONAI datalist with a subject-level, group-stratified split",
        description=(
            "Find the diffusion acquisitions of DATASET_DIR (HCP preprocessed or unprocessed, raw BIDS, "
            "QSIPrep, or given FA maps), "
            "label each subject by age group from the participants table, split subjects (never slices) "
            "into training/validation/test, and write the MONAI datalist JSON. See docs/data.md."
        ),
    )
    p.add_argument(
        "dataset_dir", metavar="DATASET_DIR", type=Path, help="dataset folder, one sub-folder per subject"
    )
    p.add_argument(
        "--participants",
        type=Path,
        default=None,
        help="participants CSV/TSV (default: participants.csv or participants.tsv in DATASET_DIR)",
    )
    p.add_argument(
        "--layout",
        choices=DATASET_LAYOUTS,
        default="auto",
        help="layout of DATASET_DIR (default auto: detected from the folder's names; docs/data.md)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where pybids' index of a BIDS dataset is kept (default $XDG_CACHE_HOME/hcp-cam or ~/.cache/hcp-cam)",
    )
    p.add_argument("--out", required=True, type=Path, help="output datalist JSON, e.g. datalist.json")
    p.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    p.add_argument("--val", type=float, default=0.2, help="validation share of each group (default: 0.2)")
    p.add_argument(
        "--test", type=float, default=0.2, help="test share of each group, hold-out only (default: 0.2)"
    )
    p.add_argument(
        "--folds", type=int, default=None, metavar="K", help="k-fold cross-validation with K folds"
    )
    p.add_argument(
        "--fold", type=int, default=None, metavar="I", help="which fold (0..K-1) is the test split"
    )
    p.add_argument(
        "--groups",
        default=DEFAULT_GROUPS.to_spec(),
        metavar="SPEC",
        help=f"age groups in label order, inclusive years (default: {DEFAULT_GROUPS.to_spec()})",
    )
    p.add_argument("--strict", action="store_true", help="fail on participants whose age fits no group")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the datalist, write it atomically and print subjects per group in each split."""
    _check_out(args.out, args.dataset_dir, args.participants)
    datalist = make_datalist(
        args.dataset_dir,
        participants=args.participants,
        val_fraction=args.val,
        test_fraction=args.test,
        seed=args.seed,
        num_folds=args.folds,
        fold=args.fold,
        groups=args.groups,
        strict=args.strict,
        layout=args.layout,
        index_dir=(args.cache_dir or user_cache_dir()) / "bids-index",
    )
    # everything is checked before this line: a failure above leaves no file behind
    write_datalist(datalist, args.out)
    print(_format_summary(datalist))
    print(f"wrote {args.out}")
    return 0


def _check_out(out: Path, dataset_dir: Path, participants: Path | None) -> None:
    """Refuse an ``--out`` that cannot take the datalist, before the dataset is read.

    Raises:
        InputError: ``out`` is a folder, lies in a folder that is a file or cannot be written, or
            is the participants table.
    """
    if out.is_dir():
        raise InputError(
            f"--out is a folder; expected a JSON file name, e.g. --out {out / 'datalist.json'}", out
        )
    tables = (
        [participants]
        if participants is not None
        else [dataset_dir / "participants.csv", dataset_dir / "participants.tsv"]
    )
    if out.exists() and any(t.exists() and out.resolve() == t.resolve() for t in tables):
        raise InputError(
            "--out is the participants table, which would be overwritten; choose another name", out
        )
    check_outputs([out])


def _format_summary(datalist: dict) -> str:
    summary = split_summary(datalist)
    labels = list(datalist["labels"])
    how = (
        f"fold {datalist['fold']} of {datalist['num_folds']}" if datalist["num_folds"] else "hold-out"
    ) + f", seed {datalist['seed']}"
    width = max(len(s) for s in SPLITS)
    lines = [
        f"subjects per group ({how}):",
        f"  {'':<{width}}  " + "  ".join(f"{g:>8}" for g in labels) + "  acquisitions",
    ]
    for name in SPLITS:
        counts = "  ".join(f"{summary[name][g]:>8}" for g in labels)
        lines.append(f"  {name:<{width}}  {counts}  {len(datalist[name]):>12}")
    return "\n".join(lines)
