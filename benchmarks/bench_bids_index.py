"""Benchmark finding the DWIs of a BIDS dataset: pybids' index built, cached and reloaded.

A synthetic BIDS tree of ``--subjects`` subjects x ``--sessions`` sessions is written (each session:
one DWI, a T1w and ``--bold-runs`` BOLD runs with their JSON sidecars, as a real study holds far more
than diffusion; gradients inherited from the top-level ``dwi.bval``/``dwi.bvec``; every NIfTI a hard
link to one tiny real file). Timed, each the median of ``--repeats`` runs in this process:

- ``os_walk``: listing every file with ``os.walk``, the floor any finder pays (the reference);
- ``fingerprint``: :func:`hcp_cam.data.bids.tree_fingerprint`, the check a cached index costs;
- ``index_memory``: ``BIDSLayout(validate=False)`` in memory (no cache, what every run would pay);
- ``index_build``: the same, written to the SQLite cache (a dataset's first run);
- ``index_load``: the cached index reloaded (every later run), fingerprint included;
- ``discover``: :func:`hcp_cam.data.bids.find_bids_acquisitions` with the cached index: the index,
  the inheritance look-up of both gradient files per DWI and the header/count check of each.

Each is also given as a ratio to ``os_walk``. A table is printed last; ``--json`` writes every number
with the machine and package versions.

    python benchmarks/bench_bids_index.py                       # 200 subjects x 2 sessions (~1 min)
    python benchmarks/bench_bids_index.py --smoke --json /tmp/bids.json     # seconds (the test runs this)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from hcp_cam.data.bids import bids_index, find_bids_acquisitions, tree_fingerprint
from hcp_cam.io import write_json_atomic

N_VOLUMES = 7


def write_tree(root: Path, subjects: int, sessions: int, bold_runs: int) -> dict[str, int]:
    """The synthetic BIDS tree; returns counts of what it holds."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "bench", "BIDSVersion": "1.9.0"}')
    (root / "dwi.bval").write_text(" ".join(["0"] + ["1000"] * (N_VOLUMES - 1)) + "\n")
    v = np.random.default_rng(0).normal(size=(3, N_VOLUMES))
    v /= np.linalg.norm(v, axis=0)
    (root / "dwi.bvec").write_text("\n".join(" ".join(f"{x:.6f}" for x in r) for r in v) + "\n")
    template = root / ".template_dwi.nii.gz"
    nib.save(
        nib.Nifti1Image(np.zeros((4, 4, 4, N_VOLUMES), np.int16), np.diag([2.0, 2.0, 2.0, 1.0])), template
    )
    rows, files = ["participant_id\tage"], 0
    for s in range(1, subjects + 1):
        sub = f"sub-{s:04d}"
        rows.append(f"{sub}\t{8 + s % 60}")
        for k in range(1, sessions + 1):
            ses = f"ses-{k:02d}"
            base = root / sub / ses
            named = [f"dwi/{sub}_{ses}_dwi", f"anat/{sub}_{ses}_T1w"]
            named += [f"func/{sub}_{ses}_task-rest_run-{r}_bold" for r in range(1, bold_runs + 1)]
            for name in named:
                path = base / f"{name}.nii.gz"
                path.parent.mkdir(parents=True, exist_ok=True)
                os.link(template, path)
                path.with_name(path.name.replace(".nii.gz", ".json")).write_text("{}")
                files += 2
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    return {"subjects": subjects, "sessions": sessions, "dwi": subjects * sessions, "files": files + 4}


def timed(fn: Callable[[], object], repeats: int, setup: Callable[[], None] | None = None) -> list[float]:
    out = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def versions() -> dict[str, str]:
    import bids
    import sqlalchemy

    return {
        "python": platform.python_version(),
        "pybids": bids.__version__,
        "sqlalchemy": sqlalchemy.__version__,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench_bids_"))
    try:
        root, index_dir = work / "bids", work / "index"
        counts = write_tree(root, args.subjects, args.sessions, args.bold_runs)

        def walk() -> int:
            return sum(len(f) for _, _, f in os.walk(root))

        def clear() -> None:
            shutil.rmtree(index_dir, ignore_errors=True)

        times = {
            "os_walk": timed(walk, args.repeats),
            "fingerprint": timed(lambda: tree_fingerprint(root), args.repeats),
            "index_memory": timed(lambda: bids_index(root, None), args.repeats),
            "index_build": timed(lambda: bids_index(root, index_dir), args.repeats, setup=clear),
        }
        bids_index(root, index_dir)  # the cache exists from here on
        times["index_load"] = timed(lambda: bids_index(root, index_dir), args.repeats)
        found: list = []
        times["discover"] = timed(
            lambda: found.append(len(find_bids_acquisitions(root, index_dir))), args.repeats
        )
        assert found[-1] == counts["dwi"], (found, counts)
        median = {k: statistics.median(v) for k, v in times.items()}
        return {
            "machine": {
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            },
            "versions": versions(),
            "tree": counts,
            "repeats": args.repeats,
            "times_s": times,
            "median_s": median,
            "ratio_to_os_walk": {k: v / median["os_walk"] for k, v in median.items()},
            "speedup_cached_over_memory": median["index_memory"] / median["index_load"],
            "discovered_acquisitions": found[-1],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(r: dict) -> str:
    t = r["tree"]
    lines = [
        f"BIDS tree: {t['subjects']} subjects x {t['sessions']} sessions, {t['dwi']} DWIs, {t['files']} files; "
        f"pybids {r['versions']['pybids']}; load {r['machine']['load_average_1min']}",
        f"{'step':<14}{'median s':>10}{'x os.walk':>11}",
    ]
    for k, v in r["median_s"].items():
        lines.append(f"{k:<14}{v:>10.3f}{r['ratio_to_os_walk'][k]:>11.1f}")
    lines.append(f"cached index: {r['speedup_cached_over_memory']:.1f}x faster than indexing in memory")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=200)
    p.add_argument("--sessions", type=int, default=2)
    p.add_argument("--bold-runs", type=int, default=2, help="BOLD runs per session (files pybids must skip)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="10 subjects, 1 repeat: a few seconds")
    p.add_argument("--json", type=Path, help="write every number here")
    args = p.parse_args(argv)
    if args.smoke:
        args.subjects, args.repeats = 10, 1
    result = run(args)
    if args.json:
        write_json_atomic(result, args.json)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
