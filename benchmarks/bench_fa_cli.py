"""Benchmark `hcp-cam fa` as users run it: one process per DWI, start-up included, torch vs DIPY backend.

Each run is a fresh ``python -m hcp_cam.cli fa ...`` process on a ``.nii.gz`` written once (synthetic
multi-shell signal, see ``bench_fa.py``; default 100x120x96 x 51 volumes, float32 as HCP ships it).
Variants, run interleaved ``--repeats`` times so that a change of machine load hits them alike:

- ``torch``: the default backend (batched torch WLS), no MONAI imported;
- ``dipy``: ``--backend dipy`` (DIPY's ``TensorModel`` WLS, the reference);
- ``torch+monai``: the torch backend in a process that imports MONAI's modules first (what
  ``hcp-cam fa`` imported before it did without them), for the start-up MONAI cost.

Start-up is the same command on a tiny DWI (4x4x4 x 51 volumes: everything but the per-voxel work).
Reported: median wall seconds and CPU seconds (user + system of the child) per variant, end-to-end
ratios DIPY / torch, the number of modules (and MONAI modules) the torch process imports, the largest
|dFA| between the backends in the mask, and the 1-minute load average around the runs (the machine
is shared: compare ratios from one run, not seconds across runs). A table is printed last; ``--json``
writes every number with the machine and package versions.

    python benchmarks/bench_fa_cli.py --smoke --json /tmp/fa_cli.json     # seconds (the test runs this)
    python benchmarks/bench_fa_cli.py --repeats 3 --json fa_cli.json      # ~5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fa import make_gradients, make_volume  # noqa: E402  (the same synthetic signal)

from hcp_cam.io import write_json_atomic  # noqa: E402

SIZES = {"smoke": (4, 4, 4), "cli": (100, 120, 96)}
N_B0, N_DIRS = 3, 16  # 3 b0 + 16 directions on each of 3 shells = 51 volumes
AFFINE = np.diag([-1.25, 1.25, 1.25, 1.0])
# what hcp-cam fa imported before it ran without MONAI (transforms/dwi.py and tensor_fit.py)
_MONAI_FIRST = (
    "import monai.config, monai.data, monai.transforms, monai.utils, sys\n"
    "from hcp_cam.cli import console_main\n"
    "sys.argv = ['hcp-cam', *sys.argv[1:]]\n"
    "console_main()\n"
)
_LIST_MODULES = (
    "import json, sys\n"
    "from hcp_cam.cli import main\n"
    "rc = main(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\n"
    "sys.exit(rc)\n"
)


def write_case(folder: Path, shape: tuple[int, int, int], seed: int) -> dict[str, Path]:
    """A DWI ``.nii.gz`` with FSL gradient files and a mask; returns the paths."""
    rng = np.random.default_rng(seed)
    bvals, bvecs = make_gradients(N_B0, N_DIRS, rng)
    data, mask = make_volume(shape, bvals, bvecs, rng)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / n for k, n in (("dwi", "dwi.nii.gz"), ("mask", "mask.nii.gz"))}
    nib.save(nib.Nifti1Image(data, AFFINE), str(paths["dwi"]))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), AFFINE), str(paths["mask"]))
    np.savetxt(folder / "dwi.bval", bvals[None], fmt="%g")
    np.savetxt(folder / "dwi.bvec", bvecs.T, fmt="%.8f")
    return paths


def command(variant: str, case: dict[str, Path], out: Path) -> list[str]:
    args = ["fa", str(case["dwi"]), "--mask", str(case["mask"]), "--out", str(out), "--device", "cpu"]
    if variant == "dipy":
        args += ["--backend", "dipy"]
    if variant == "torch+monai":
        return [sys.executable, "-c", _MONAI_FIRST, *args]
    return [sys.executable, "-m", "hcp_cam.cli", *args]


def timed_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr[-1500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def imported_modules(case: dict[str, Path], out: Path, env: dict[str, str], listing: Path) -> list[str]:
    cmd = [sys.executable, "-c", _LIST_MODULES, str(listing), *command("torch", case, out)[3:]]
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return json.loads(listing.read_text())


def versions() -> dict[str, str]:
    import dipy
    import monai
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dipy": dipy.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "nibabel": nib.__version__,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    shape = SIZES["smoke" if args.smoke else "cli"]
    repeats = 1 if args.smoke else args.repeats
    env = {**os.environ}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    variants = ("torch", "dipy", "torch+monai")
    with tempfile.TemporaryDirectory(prefix="bench-fa-cli-") as tmp:
        tmp = Path(tmp)
        tiny = write_case(tmp / "tiny", (4, 4, 4), args.seed)
        case = tiny if args.smoke else write_case(tmp / "case", shape, args.seed)
        n_mask = int(np.asarray(nib.load(str(case["mask"])).dataobj).sum())
        loads = [os.getloadavg()[0]]
        startup: dict[str, list] = {v: [] for v in variants}
        e2e: dict[str, list] = {v: [] for v in variants}
        for _ in range(repeats):
            for v in variants:  # interleaved: a change of load hits every variant
                startup[v].append(timed_run(command(v, tiny, tmp / f"{v}_fa.nii.gz"), env))
                if case is not tiny:  # --smoke: the tiny volume is the end-to-end case too
                    e2e[v].append(timed_run(command(v, case, tmp / f"{v}_fa.nii.gz"), env))
                else:
                    e2e[v].append(startup[v][-1])
                loads.append(os.getloadavg()[0])
        mask = np.asarray(nib.load(str(case["mask"])).dataobj) > 0
        fa_t, fa_d = (nib.load(str(tmp / f"{v}_fa.nii.gz")).get_fdata() for v in ("torch", "dipy"))
        mods = imported_modules(case, tmp / "m_fa.nii.gz", env, tmp / "modules.json")
        file_mib = case["dwi"].stat().st_size / 2**20

    def med(runs: list, k: int) -> float:
        return statistics.median(r[k] for r in runs)

    median = {
        "startup_wall_s": {v: med(startup[v], 0) for v in variants},
        "startup_cpu_s": {v: med(startup[v], 1) for v in variants},
        "end_to_end_wall_s": {v: med(e2e[v], 0) for v in variants},
        "end_to_end_cpu_s": {v: med(e2e[v], 1) for v in variants},
    }
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "omp_num_threads": env.get("OMP_NUM_THREADS"),
            "load_average_1min": loads,
        },
        "versions": versions(),
        "sizes": {
            "shape": list(shape),
            "n_volumes": N_B0 + 3 * N_DIRS,
            "n_mask_voxels": n_mask,
            "nii_gz_mib": round(file_mib, 1),
            "repeats": repeats,
        },
        "runs": {"startup": startup, "end_to_end": e2e},
        "median": median,
        "ratio_dipy_over_torch": {
            "end_to_end_wall": median["end_to_end_wall_s"]["dipy"] / median["end_to_end_wall_s"]["torch"],
            "end_to_end_cpu": median["end_to_end_cpu_s"]["dipy"] / median["end_to_end_cpu_s"]["torch"],
        },
        "monai_startup_cost_s": {
            "wall": median["startup_wall_s"]["torch+monai"] - median["startup_wall_s"]["torch"],
            "cpu": median["startup_cpu_s"]["torch+monai"] - median["startup_cpu_s"]["torch"],
        },
        "modules": {
            "total": len(mods),
            "monai": sum(m.split(".")[0] == "monai" for m in mods),
            "torch": sum(m.split(".")[0] == "torch" for m in mods),
        },
        "max_abs_dfa_in_mask": float(np.abs(fa_t - fa_d)[mask].max()),
    }


def table(r: dict[str, object]) -> str:
    s, m, rat = r["sizes"], r["median"], r["ratio_dipy_over_torch"]
    loads = r["machine"]["load_average_1min"]
    lines = [
        f"hcp-cam fa, one process per DWI: {s['shape']} x {s['n_volumes']} volumes ({s['nii_gz_mib']} MiB .nii.gz), "
        f"{s['n_mask_voxels']} brain voxels, median of {s['repeats']}; load {min(loads):.1f}-{max(loads):.1f}",
        f"{'variant':<13}{'start-up s':>12}{'start-up CPU s':>16}{'end-to-end s':>14}{'end-to-end CPU s':>18}",
    ]
    for v in ("torch", "dipy", "torch+monai"):
        lines.append(
            f"{v:<13}{m['startup_wall_s'][v]:>12.2f}{m['startup_cpu_s'][v]:>16.2f}"
            f"{m['end_to_end_wall_s'][v]:>14.2f}{m['end_to_end_cpu_s'][v]:>18.2f}"
        )
    mods = r["modules"]
    lines.append(
        f"modules imported by the torch run: {mods['total']} ({mods['monai']} MONAI, {mods['torch']} torch); "
        f"MONAI's start-up cost: {r['monai_startup_cost_s']['cpu']:.2f} CPU s; "
        f"max |dFA| torch vs dipy: {r['max_abs_dfa_in_mask']:.1e}"
    )
    lines.append(
        f"end to end dipy/torch: {rat['end_to_end_wall']:.1f}x wall, {rat['end_to_end_cpu']:.1f}x CPU"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs per variant; medians reported")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: unset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write every number to this JSON file")
    p.add_argument("--smoke", action="store_true", help="the start-up runs only, once: a check in seconds")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
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
