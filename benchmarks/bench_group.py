"""Benchmark the group analysis: SimpleITK registration per subject and the permutation test.

Registration: misaligned synthetic subjects (``hcp_cam.synth``, heads rotated up to 10 degrees and
shifted up to 6 mm, noise-free FA) registered to the generator's average-brain template, affine and
with each deformable refinement; seconds per subject (median), the warped FA's correlation with
the template, and the ratio of each deformable run to the affine one in the same process.
Permutation test: ``hcp_cam.group.permutation_test`` (all permutations as matrix products) on
``--perm-subjects`` subjects over the template's brain voxels, against the reference of the same
statistic one permutation at a time (NaN-aware numpy over all voxels; timed on a part of the
permutations and scaled). A table is printed last; ``--json`` writes every number.

    python benchmarks/bench_group.py --smoke --json /tmp/bench_group.json    # seconds
    python benchmarks/bench_group.py --size demo                              # 40x48x40 at 2.5 mm
    python benchmarks/bench_group.py --size hcp --subjects 1 --sampling 0.25  # 145x174x145 at 1.25 mm
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hcp_cam.group import RegistrationSettings, permutation_test, register, resample, to_sitk
from hcp_cam.io import write_json_atomic
from hcp_cam.synth import make_phantom, make_subject

SIZES = {
    "smoke": ((24, 28, 24), (3.0, 3.0, 3.0)),
    "demo": ((40, 48, 40), (2.5, 2.5, 2.5)),
    "hcp": ((145, 174, 145), (1.25, 1.25, 1.25)),
}
METHODS = ("affine", "bspline", "demons")


def bench_registration(shape, voxel, n_subjects: int, methods, sampling: float) -> dict:
    template = make_phantom(shape, voxel, rng=None)
    brain = template.mask > 0
    warm = make_subject("w", "old", shape=shape, voxel_size=voxel, seed=[7, 99], snr=None, misalign=True)
    register(to_sitk(template.fa, warm.affine), to_sitk(warm.fa, warm.affine))  # untimed: first-call costs
    out = {m: {"seconds": [], "correlation": []} for m in methods}
    for k in range(n_subjects):
        s = make_subject(str(k), "old", shape=shape, voxel_size=voxel, seed=[7, k], snr=None, misalign=True)
        fixed, moving = to_sitk(template.fa, s.affine), to_sitk(s.fa, s.affine)
        for m in methods:
            settings = RegistrationSettings(deformable=None if m == "affine" else m, sampling=sampling)
            t0 = time.perf_counter()
            reg = register(fixed, moving, settings)
            out[m]["seconds"].append(time.perf_counter() - t0)
            warped = resample(s.fa, s.affine, fixed, reg.transform, "linear")
            ok = brain & np.isfinite(warped)
            out[m]["correlation"].append(float(np.corrcoef(warped[ok], template.fa[ok])[0, 1]))
    for m in methods:
        out[m]["median_s"] = statistics.median(out[m]["seconds"])
        out[m]["ratio_to_affine"] = out[m]["median_s"] / max(out["affine"]["median_s"], 1e-12)
    return {"brain_voxels": int(brain.sum()), **out}


def _welch_one(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Welch t of one labelling, NaN-aware, over all columns (the loop the batched test replaces)."""
    a, b = x[g == 1], x[g == 0]
    na, nb = np.isfinite(a).sum(0), np.isfinite(b).sum(0)
    va, vb = np.nanvar(a, 0, ddof=1), np.nanvar(b, 0, ddof=1)
    return (np.nanmean(a, 0) - np.nanmean(b, 0)) / np.sqrt(va / na + vb / nb)


def bench_permutations(n_voxels: int, n_subjects: int, n_perm: int, reference_perm: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_subjects, n_voxels)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan  # unknown voxels, as CAM maps have
    g = np.r_[np.zeros(n_subjects // 2, int), np.ones(n_subjects - n_subjects // 2, int)]
    t0 = time.perf_counter()
    res = permutation_test(x, g, n_perm, seed=seed)
    ours = time.perf_counter() - t0
    perms = [rng.permutation(g) for _ in range(reference_perm)]
    t0 = time.perf_counter()
    for p in perms:
        np.nanmax(np.abs(_welch_one(x, p)))
    ref = (time.perf_counter() - t0) * (n_perm + 1) / reference_perm
    return {
        "n_subjects": n_subjects,
        "n_voxels": n_voxels,
        "n_permutations": n_perm,
        "seconds": ours,
        "reference_seconds_scaled": ref,
        "reference_permutations_timed": reference_perm,
        "speedup_over_reference": ref / ours,
        "min_p": float(res.p_fwe.min()),
    }


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "sitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
    }


def versions() -> dict:
    import scipy

    return {
        "python": platform.python_version(),
        "SimpleITK": sitk.Version.VersionString(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    size = "smoke" if args.smoke else args.size
    shape, voxel = SIZES[size]
    methods = ("affine",) if args.affine_only else METHODS
    reg = bench_registration(shape, voxel, 1 if args.smoke else args.subjects, methods, args.sampling)
    demo_voxels = int((make_phantom(SIZES["demo"][0], rng=None).mask > 0).sum())
    perm = bench_permutations(
        reg["brain_voxels"] if args.smoke else demo_voxels,
        20 if args.smoke else args.perm_subjects,
        50 if args.smoke else args.permutations,
        5 if args.smoke else args.reference_permutations,
        args.seed,
    )
    return {
        "machine": machine(),
        "versions": versions(),
        "sizes": {"name": size, "shape": list(shape), "voxel_mm": list(voxel), "sampling": args.sampling},
        "registration": reg,
        "permutation": perm,
    }


def table(r: dict) -> str:
    s, reg, p = r["sizes"], r["registration"], r["permutation"]
    lines = [
        f"group benchmark: {s['shape']} at {s['voxel_mm'][0]} mm, {reg['brain_voxels']} brain voxels, "
        f"metric sampling {s['sampling']}, SimpleITK threads {r['machine']['sitk_threads']}, "
        f"load {r['machine']['load_average_1min']}",
        f"{'registration':<14}{'s/subject':>10}{'x affine':>10}{'FA corr':>9}",
    ]
    for m in (k for k in METHODS if k in reg):
        lines.append(
            f"{m:<14}{reg[m]['median_s']:>10.2f}{reg[m]['ratio_to_affine']:>10.2f}"
            f"{statistics.median(reg[m]['correlation']):>9.3f}"
        )
    lines.append(
        f"permutation test: {p['n_permutations']} permutations, {p['n_subjects']} subjects, {p['n_voxels']} voxels: "
        f"{p['seconds']:.2f} s (one permutation at a time: {p['reference_seconds_scaled']:.1f} s, "
        f"{p['speedup_over_reference']:.1f}x)"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=("demo", "hcp"), default="demo", help="grid (default demo)")
    p.add_argument("--subjects", type=int, default=3, help="subjects registered per method (default 3)")
    p.add_argument("--sampling", type=float, default=1.0, help="share of voxels the metric samples")
    p.add_argument("--affine-only", action="store_true", help="skip the deformable refinements")
    p.add_argument("--permutations", type=int, default=1000)
    p.add_argument("--perm-subjects", type=int, default=100)
    p.add_argument("--reference-permutations", type=int, default=50, help="reference permutations timed")
    p.add_argument("--threads", type=int, default=None, help="SimpleITK threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write every number to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny grid, one subject, 50 permutations")
    args = p.parse_args(argv)
    if args.subjects < 1 or args.permutations < 1:
        p.error("--subjects and --permutations must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        write_json_atomic(result, args.json)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
