"""`hcp-cam synth`: write a synthetic HCP-like diffusion dataset with its ground truth.

Example::

    hcp-cam synth data/demo --subjects 16 --seed 0
    hcp-cam synth data/raw --subjects 4 --layout unprocessed --runs 3
    hcp-cam synth data/bench --subjects 1 --hcp-size      # 145x174x145 at 1.25 mm, 18 b0 + 3x90
    hcp-cam synth data/bids --subjects 8 --layout bids --sessions 2   # raw BIDS, inherited dwi.bval/.bvec
    hcp-cam synth data/study --subjects 8 --layout qsiprep            # data/study/derivatives/qsiprep
    hcp-cam synth data/age --subjects 40 --age-effect graded   # ages 8-75, effect growing with age
    hcp-cam synth data/moved --subjects 24 --misalign    # heads rotated/shifted; template and atlas
"""

from __future__ import annotations

import argparse
from typing import Any

from hcp_cam.errors import ConfigError
from hcp_cam.synth import DEFAULT_SHAPE, DEFAULT_VOXEL_SIZE, LAYOUTS, generate_dataset
from hcp_cam.synth.bids import BIDS_LAYOUTS, generate_bids_dataset
from hcp_cam.synth.graded import AGE_EFFECTS, DEFAULT_AGE_RANGE

__all__ = ["register"]

# what --hcp-size changes (options given explicitly still win)
HCP_SIZE: dict[str, Any] = {
    "shape": (145, 174, 145),
    "voxel_size": (1.25, 1.25, 1.25),
    "n_b0": 18,
    "n_per_shell": 90,
}
_DEMO: dict[str, Any] = {
    "shape": DEFAULT_SHAPE,
    "voxel_size": DEFAULT_VOXEL_SIZE,
    "n_b0": 3,
    "n_per_shell": 10,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic HCP-like DWI dataset with known ground truth",
        description=(
            "Write OUT/<subject>/T1w/Diffusion/{data.nii.gz,bvals,bvecs,nodif_brain_mask.nii.gz} (or the "
            "unprocessed layout), OUT/participants.csv (subject,age,group) and "
            "OUT/derivatives/ground_truth/<subject>_{fa,roi}.nii.gz. Old subjects have lower FA in the "
            "effect region (radial diffusivity times 1 + effect size). Reproducible from --seed."
        ),
    )
    p.add_argument(
        "out", metavar="OUT", help="dataset folder (created; must be empty or a previous synth output)"
    )
    p.add_argument(
        "--subjects", type=int, default=16, metavar="N", help="number of subjects, half old (default 16)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), help="grid in voxels (default 40 48 40)"
    )
    p.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        metavar=("DX", "DY", "DZ"),
        help="voxel size in mm (default 2.5 2.5 2.5)",
    )
    p.add_argument(
        "--snr", type=float, default=30.0, help="white-matter S0 / noise sigma; 'inf' for none (default 30)"
    )
    p.add_argument(
        "--effect-size",
        type=float,
        default=0.5,
        help="relative RD increase of old subjects in the region (default 0.5)",
    )
    p.add_argument(
        "--layout",
        choices=(*LAYOUTS, *BIDS_LAYOUTS),
        default="minimal",
        help="HCP layout (minimal, unprocessed), raw BIDS (bids) or QSIPrep-like derivatives (qsiprep); "
        "default minimal",
    )
    p.add_argument(
        "--sessions", type=int, default=1, metavar="N", help="sessions per subject, bids/qsiprep (default 1)"
    )
    p.add_argument("--b0", type=int, dest="n_b0", metavar="N", help="number of b0 volumes (default 3)")
    p.add_argument(
        "--directions", type=int, dest="n_per_shell", metavar="N", help="directions per shell (default 10)"
    )
    p.add_argument(
        "--shells",
        type=float,
        nargs="+",
        default=[1000.0, 2000.0, 3000.0],
        metavar="B",
        help="b-values in s/mm^2",
    )
    p.add_argument(
        "--oblique", type=float, default=0.0, metavar="DEG", help="rotate the affine by DEG degrees"
    )
    p.add_argument("--runs", type=int, default=2, help="direction sets of the unprocessed layout, each RL+LR")
    p.add_argument(
        "--jitter", type=float, default=1.0, help="scale of subject-to-subject variability (0: none)"
    )
    p.add_argument(
        "--hcp-size", action="store_true", help="HCP-size data: 145x174x145, 1.25 mm, 18 b0 + 3x90"
    )
    p.add_argument(
        "--misalign",
        action="store_true",
        help="rotate and shift each head inside its grid (true transforms in the ground truth; implies --atlas)",
    )
    p.add_argument(
        "--max-rotation",
        type=float,
        default=10.0,
        metavar="DEG",
        help="largest misalignment rotation (default 10)",
    )
    p.add_argument(
        "--max-shift", type=float, default=6.0, metavar="MM", help="largest misalignment shift (default 6)"
    )
    p.add_argument(
        "--atlas",
        action="store_true",
        help="also write the average brain's FA template and a label atlas (derivatives/ground_truth)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty folder that is no synth output"
    )
    p.add_argument(
        "--age-effect",
        choices=AGE_EFFECTS,
        default="groups",
        help="groups: young without the effect, old with it (default); graded: ages spread over "
        "--age-range, the effect growing with age (for regression and 3+ groups)",
    )
    p.add_argument(
        "--age-range",
        type=float,
        nargs=2,
        default=list(DEFAULT_AGE_RANGE),
        metavar=("LOW", "HIGH"),
        help="years of the graded mode (default 8 75)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`hcp_cam.synth.generate_dataset` that ``args`` asks for."""
    base = HCP_SIZE if args.hcp_size else _DEMO
    given = {k: getattr(args, k) for k in base if getattr(args, k) is not None}
    sizes = {**base, **given}
    return {
        "out_dir": args.out,
        "n_subjects": args.subjects,
        "seed": args.seed,
        "shape": tuple(sizes["shape"]),
        "voxel_size": tuple(sizes["voxel_size"]),
        "snr": args.snr,
        "effect_size": args.effect_size,
        "layout": args.layout,
        "n_b0": sizes["n_b0"],
        "n_per_shell": sizes["n_per_shell"],
        "shells": tuple(args.shells),
        "oblique_deg": args.oblique,
        "n_runs": args.runs,
        "jitter": args.jitter,
        "overwrite": args.overwrite,
        "progress": not args.no_progress,
        "age_effect": args.age_effect,
        "age_range": tuple(args.age_range),
        "misalign": args.misalign,
        "max_rotation_deg": args.max_rotation,
        "max_shift_mm": args.max_shift,
        "atlas": True if (args.atlas or args.misalign) else None,
    }


def run(args: argparse.Namespace) -> int:
    options = resolve_options(args)
    if args.layout in BIDS_LAYOUTS:
        if args.age_effect != "groups":
            raise ConfigError(
                f"--age-effect {args.age_effect} is written in the HCP layouts ({', '.join(LAYOUTS)}), "
                f"not in --layout {args.layout}"
            )
        if args.misalign or args.atlas:
            raise ConfigError(
                f"--misalign and --atlas write the HCP layouts (minimal, unprocessed), not --layout {args.layout}"
            )
        for key in (
            "n_runs",
            "age_effect",
            "age_range",
            "misalign",
            "max_rotation_deg",
            "max_shift_mm",
            "atlas",
        ):
            del options[key]
        ds = generate_bids_dataset(**options, n_sessions=args.sessions)
    else:
        ds = generate_dataset(**options)
    if args.age_effect == "graded":
        ages = ds.participants["age"]
        print(
            f"hcp-cam synth: wrote {len(ds.subjects)} subjects (ages {ages.min()}-{ages.max()}, graded effect, "
            f"{ds.layout} layout) to {ds.root}; ground truth in {ds.manifest.parent}"
        )
        return 0
    groups = ds.participants["group"].value_counts().to_dict()
    print(
        f"hcp-cam synth: wrote {len(ds.subjects)} subjects ({groups.get('young', 0)} young, "
        f"{groups.get('old', 0)} old, {ds.layout} layout) to {ds.root}; ground truth in {ds.manifest.parent}"
    )
    if getattr(ds, "dataset_dir", None) not in (None, ds.root):
        print(f"hcp-cam synth: the dataset to use is {ds.dataset_dir} (participants: {ds.participants_file})")
    return 0
