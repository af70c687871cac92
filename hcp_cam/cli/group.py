"""`hcp-cam group`: group CAM and FA maps of bundle runs in a common space, with permutation tests.

Examples::

    hcp-cam group runs/alexnet_fold0 runs/alexnet_fold1 runs/alexnet_fold2 --out group/alexnet
    hcp-cam group runs/alexnet_fold* --out group/std --template FMRIB58_FA_1mm.nii.gz \\
        --atlas JHU-ICBM-labels-1mm.nii.gz --atlas-labels JHU-labels.xml
    hcp-cam group runs/alexnet_fold* --out group/std --template FA.nii.gz --shard 3/10   # array job
    hcp-cam group --out group/alexnet --to-subject 100307 group/alexnet/group_difference_cam.nii.gz
"""

from __future__ import annotations

import argparse

from hcp_cam.errors import ConfigError

# the choices of hcp_cam.group.registration, written out so that `hcp-cam --help` imports no SimpleITK
# (tests/test_group_cli.py checks they match)
METRICS = ("correlation", "mattes")
DEFORMABLE = ("bspline", "demons")
CAM_SCALES = ("zscore", "raw")  # hcp_cam.group.cam_scale.CAM_SCALES


__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "group",
        help="group CAM and FA maps in a common space: registration, permutation tests, atlas tables",
        description=(
            "Register every held-out subject's FA to a template (given, or built from the cohort) with "
            "SimpleITK, bring its FA and CAM into template space, and write per-group mean maps, the "
            "difference of the last group minus the first, voxelwise t and max-statistic FWE p maps, "
            "clusters.csv, regions.csv (with an atlas), registration_qc.csv and group_overview.png."
        ),
    )
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="bundle run folders (e.g. the folds of a CV)")
    p.add_argument("--out", required=True, help="output folder (transforms there are reused by later calls)")
    p.add_argument("--template", help="FA-like 3D NIfTI (e.g. FMRIB58_FA); default: a study template")
    p.add_argument(
        "--atlas", help="label NIfTI in the template's space (needs --template and --atlas-labels)"
    )
    p.add_argument("--atlas-labels", help="the atlas's index,name table (CSV/TSV) or FSL atlas XML")
    p.add_argument(
        "--permutations", type=int, default=1000, help="permutations of the FWE tests (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="permutation seed (default 0)")
    p.add_argument(
        "--shard", help="i/n: register every n-th acquisition from the i-th, write transforms, stop"
    )
    p.add_argument("--deformable", choices=DEFORMABLE, help="deformable refinement after the affine stage")
    p.add_argument(
        "--metric", choices=METRICS, default="correlation", help="registration metric (default correlation)"
    )
    p.add_argument("--template-iterations", type=int, default=2, help="study template rounds (default 2)")
    p.add_argument(
        "--template-only", action="store_true", help="build the study template and stop (before --shard)"
    )
    p.add_argument(
        "--qc-threshold",
        type=float,
        default=0.8,
        help="flag registrations whose FA correlates less (default 0.8)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="FWE threshold of clusters.csv (default 0.05)")
    p.add_argument(
        "--min-coverage", type=float, default=0.5,
        help="test a voxel where this share of each group has a value (default 0.5)",
    )  # fmt: skip
    p.add_argument(
        "--shuffle-groups", type=int, metavar="SEED",
        help="negative control: permute the group labels across subjects with SEED",
    )  # fmt: skip
    p.add_argument(
        "--cam-scale", choices=CAM_SCALES, default="zscore",
        help="per-subject CAM scaling before the statistics: zscore (default; each CAM minus its mean over "
        "its known brain voxels, divided by its sd: where the groups differ) or raw (a larger class score "
        "scales a whole map: how confident)",
    )  # fmt: skip
    p.add_argument(
        "--sampling", type=float, default=1.0, help="share of voxels the metric samples (default 1)"
    )
    p.add_argument(
        "--to-subject", nargs=2, metavar=("KEY", "IMAGE"),
        help="write IMAGE (on the template grid) into subject KEY's FA grid, using OUT's transforms",
    )  # fmt: skip
    p.add_argument("--no-figure", action="store_true", help="no group_overview.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hcp_cam.group import run_group_analysis, to_subject

    if args.to_subject is not None:
        if args.runs:
            raise ConfigError("--to-subject uses the transforms in --out; give no run folders with it")
        path = to_subject(args.out, args.to_subject[0], args.to_subject[1])
        print(f"hcp-cam group: wrote {path}")
        return 0
    if not args.runs:
        raise ConfigError("give at least one run folder (or --to-subject KEY IMAGE)")
    result = run_group_analysis(
        args.runs, args.out, template=args.template, atlas=args.atlas, atlas_labels=args.atlas_labels,
        permutations=args.permutations, seed=args.seed, shard=args.shard, deformable=args.deformable,
        metric=args.metric, template_iterations=args.template_iterations, qc_threshold=args.qc_threshold,
        alpha=args.alpha, min_coverage=args.min_coverage, shuffle_groups=args.shuffle_groups,
        template_only=args.template_only, sampling=args.sampling, cam_scale=args.cam_scale,
        figure=not args.no_figure,
        progress=not args.no_progress,
    )  # fmt: skip
    s = result.summary
    if args.template_only:
        print(f"hcp-cam group: template in {result.out_dir / 'template.nii.gz'}")
    elif "shard" in s:
        print(
            f"hcp-cam group: shard {args.shard}: {len(result.qc)} registrations in {result.out_dir / 'transforms'}"
        )
    else:
        counts = ", ".join(f"{g} {len(v)}" for g, v in s["subjects"].items())
        peak = s["cam_difference_peak"]
        where = f" ({peak['label_name']})" if peak.get("label_name") else ""
        print(
            f"hcp-cam group: {counts} subjects; CAM ({s['cam_scale']}) difference peak at {peak['mm']} mm{where}, FWE p {peak['p_fwe']:.3g}"
        )
        if "top_region" in s:
            t = s["top_region"]
            print(
                f"  top region: {t['label']} {t['name']} (difference {t['difference']:.3g}, p {t['p_value']:.3g})"
            )
        if s["qc_flagged"]:
            print(f"  registration QC flagged: {', '.join(s['qc_flagged'])}")
        print(f"  outputs in {result.out_dir}")
    return 0
