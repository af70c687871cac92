"""`hcp-cam cam`: Class Activation Map of one FA map or DWI with a trained network.

Examples::

    hcp-cam cam --checkpoint runs/alexnet/checkpoints/model.pt sub01_fa.nii.gz --out cam/sub01
    hcp-cam cam --checkpoint model.pt --config runs/alexnet/config.json data.nii.gz \\
        --bvals bvals --bvecs bvecs --mask nodif_brain_mask.nii.gz --out cam/sub01 --class difference

Writes ``PREFIX_cam.nii.gz`` (raw CAM), ``PREFIX_cam01.nii.gz`` ([0, 1], for display),
``PREFIX_bbox.json``, ``PREFIX_overlay.png`` and, for a DWI, ``PREFIX_fa.nii.gz``; see docs/viewing.md.
"""

from __future__ import annotations

import argparse

# hcp_cam.cam.inferer.METHODS and hcp_cam.cam.volume.COVERAGE_MODES, written out so that `hcp-cam --help`
# imports no torch or MONAI (tests/test_cli_startup.py checks they match)
METHODS = ("cam", "gradcam", "gradcampp")
COVERAGE_MODES = ("all", "any")


__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cam",
        help="CAM of one FA map or DWI with a trained network, written as NIfTI in the FA's grid",
        description="Class Activation Map of one FA map (3D) or DWI (4D: the tensor is fitted first) with "
        "a trained network, written with exactly the FA's geometry. Bad input: exit 2, nothing written.",
    )
    p.add_argument("input", help="FA map (3D) or DWI (4D) .nii/.nii.gz")
    p.add_argument("--checkpoint", required=True, help="RUN/checkpoints/model.pt or checkpoint_epoch=N.pt")
    p.add_argument("--out", required=True, help="output prefix: PREFIX_cam.nii.gz, PREFIX_cam01.nii.gz, ...")
    p.add_argument(
        "--config", help="the run's config.json (default: config.json two folders above the checkpoint)"
    )
    p.add_argument("--bvals", help="FSL b-values of a DWI (default: <stem>.bval or bvals beside it)")
    p.add_argument("--bvecs", help="FSL directions of a DWI (default: <stem>.bvec or bvecs beside it)")
    p.add_argument("--mask", help="3D brain mask on the input's grid (default: voxels with FA > 0)")
    p.add_argument(
        "--class",
        dest="cam_class",
        default="predicted",
        help="class of the map: a class name (e.g. old, young), an index, 'predicted' (default) or "
        "'difference' (second class minus first, two classes only)",
    )
    p.add_argument("--method", choices=METHODS, default="cam", help="CAM (GAP/GMP head) or Grad-CAM(++)")
    p.add_argument("--layer", help="target layer of gradcam/gradcampp (default: the feature layer)")
    p.add_argument(
        "--slices",
        choices=("trained", "all"),
        default="trained",
        help="2D networks: only the slices the network was trained on (default; the rest stay 0, "
        "unknown) or every slice with brain",
    )
    p.add_argument(
        "--coverage",
        choices=COVERAGE_MODES,
        default="all",
        help="2D networks: fused map where every axis covers a voxel (default; with trained slices, the "
        "block where the three slabs cross) or where any axis does",
    )
    p.add_argument(
        "--threshold", type=float, default=0.2, help="box threshold as a fraction of the CAM maximum (0.2)"
    )
    p.add_argument("--roi", help="ground-truth region on the FA grid: adds localization scores to the JSON")
    p.add_argument("--device", choices=("cpu", "cuda"), help="torch device (default: cuda if available)")
    p.add_argument("--no-figure", action="store_true", help="do not write PREFIX_overlay.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute and write the CAM, print one summary line; errors propagate to the CLI (exit 2)."""
    from hcp_cam.cam.single import cam_single, summary_line

    row = cam_single(
        args.input,
        args.checkpoint,
        args.out,
        config=args.config,
        bvals=args.bvals,
        bvecs=args.bvecs,
        mask=args.mask,
        cam_class=args.cam_class,
        method=args.method,
        layer=args.layer,
        slices=args.slices,
        threshold=args.threshold,
        roi=args.roi,
        device=args.device,
        figure=not args.no_figure,
        coverage=args.coverage,
    )
    print(summary_line(row))
    return 0
