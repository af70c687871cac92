"""`hcp-cam fa`: diffusion-tensor FA of one DWI (like FSL ``dtifit``) or of a whole dataset.

Examples::

    hcp-cam fa data.nii.gz --bvals bvals --bvecs bvecs --mask nodif_brain_mask.nii.gz --out fa.nii.gz
    hcp-cam fa data.nii.gz --out fa.nii.gz --metrics fa,md,v1 --backend dipy
    hcp-cam fa --dataset-dir /data/HCP --out-dir cache/fa --shard 0/4 --device cuda
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hcp_cam.data.layouts import DATASET_LAYOUTS
from hcp_cam.errors import ConfigError
from hcp_cam.transforms.dti_options import BACKENDS
from hcp_cam.transforms.dti_options import TENSOR_METRICS as _METRICS

__all__ = ["register", "run", "BACKENDS", "TENSOR_METRICS"]

# from a module without torch: `hcp-cam --help` imports no torch or MONAI (tests/test_cli_startup.py)
TENSOR_METRICS = tuple(_METRICS)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fa",
        help="fit the diffusion tensor and write FA (one DWI, or every acquisition of a dataset)",
        description="Fit the diffusion tensor (WLS, as DIPY's TensorModel) and write FA maps with the "
        "DWI's exact geometry. Give a DWI and --out, or --dataset-dir and --out-dir.",
    )
    p.add_argument("dwi", nargs="?", help="4D DWI .nii/.nii.gz (single-file mode)")
    p.add_argument("--bvals", help="FSL b-values; default <stem>.bval or bvals beside the DWI")
    p.add_argument("--bvecs", help="FSL directions (3 x N or N x 3); default <stem>.bvec or bvecs")
    p.add_argument("--mask", help="3D brain mask on the DWI grid (default: every voxel)")
    p.add_argument(
        "--out", help="FA output .nii.gz or .nii; other metrics go to <stem>_<metric>.nii.gz (all or none)"
    )
    p.add_argument("--dataset-dir", help="dataset root (HCP, BIDS, QSIPrep): FA of every acquisition")
    p.add_argument(
        "--layout",
        choices=DATASET_LAYOUTS,
        default="auto",
        help="layout of --dataset-dir (default auto: detected; docs/data.md)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="where pybids' index of a BIDS dataset is kept (default $XDG_CACHE_HOME/hcp-cam or ~/.cache/hcp-cam)",
    )
    p.add_argument("--out-dir", help="cache root for --dataset-dir: <out-dir>/<subject>/<acq>_fa.nii.gz")
    p.add_argument(
        "--shard", default="0/1", help="i/n: process every n-th acquisition from the i-th (default 0/1)"
    )
    p.add_argument("--backend", choices=BACKENDS, default="torch", help="tensor fit (default torch)")
    p.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)"
    )
    p.add_argument(
        "--metrics",
        default="fa",
        help=f"comma-separated maps to write in single-file mode, from {','.join(TENSOR_METRICS)} (default fa)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar in dataset mode")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to single-file or dataset mode; raises ConfigError on inconsistent options."""
    from hcp_cam.data.cache import user_cache_dir
    from hcp_cam.fa_maps import compute_dataset_fa, compute_fa_file, parse_shard

    if args.dataset_dir is not None:
        if args.dwi is not None or args.out is not None:
            raise ConfigError("give either a DWI with --out, or --dataset-dir with --out-dir, not both")
        if args.out_dir is None:
            raise ConfigError("--dataset-dir needs --out-dir")
        if args.metrics != "fa":
            raise ConfigError("--metrics applies to single-file mode; the dataset cache holds FA only")
        paths = compute_dataset_fa(
            args.dataset_dir,
            args.out_dir,
            backend=args.backend,
            device=args.device,
            shard=parse_shard(args.shard),
            progress=not args.no_progress,
            layout=args.layout,
            index_dir=Path(args.cache_dir or user_cache_dir()) / "bids-index",
        )
        print(f"{len(paths)} FA maps in {args.out_dir}")
        return 0
    if args.dwi is None or args.out is None:
        raise ConfigError("give a DWI and --out (or --dataset-dir and --out-dir)")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    paths = compute_fa_file(
        args.dwi,
        args.bvals,
        args.bvecs,
        args.mask,
        args.out,
        backend=args.backend,
        device=args.device,
        metrics=metrics,
    )
    for metric, path in paths.items():
        print(f"{metric}: {path}")
    # every file is in place: the program may skip the interpreter's teardown (hcp_cam.cli.console_main);
    # not in dataset mode, whose BIDS index (SQLite) is closed by that teardown
    args.fast_exit = True
    return 0
