"""Benchmark the tensor fit: DIPY's TensorModel (WLS) against hcp-cam's batched torch WLS.

A synthetic multi-shell volume (b = 0/1000/2000/3000 s/mm^2, random tensors in an ellipsoidal
brain, Rician noise) is fitted by both backends through :class:`hcp_cam.transforms.DTIFit`.
Reported: median seconds over ``--repeats``, voxels/s, the speed ratio, the largest |dFA| inside
the mask, peak RSS growth while fitting, and end to end from a ``.nii.gz`` on disk: decode time
(:class:`~hcp_cam.transforms.LoadDWI`) against fit time. A table is printed last; ``--json``
writes every number with the machine and package versions.

    python benchmarks/bench_fa.py --smoke --json /tmp/bench_fa.json    # seconds
    python benchmarks/bench_fa.py --size small --repeats 3               # ~1 minute on 2 cores
    python benchmarks/bench_fa.py --size half --threads 2                 # 73x87x73x288
    python benchmarks/bench_fa.py --size hcp --device cuda               # 145x174x145x288; ~10 GB RAM
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
import torch

from hcp_cam.io import write_json_atomic

# shape, b0 volumes, directions per shell
SIZES = {
    "smoke": ((16, 18, 14), 2, 10),
    "small": ((48, 56, 48), 6, 30),
    "half": ((73, 87, 73), 18, 90),  # HCP's 288 volumes on half the grid per axis (1/8 of the voxels)
    "hcp": ((145, 174, 145), 18, 90),
}
SHELLS = (1000.0, 2000.0, 3000.0)
S0, SIGMA = 1000.0, 1000.0 / 30.0


def make_gradients(n_b0: int, n_dirs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """HCP-like table: b0 at b=5, then ``n_dirs`` random unit directions per shell, b jittered by 10."""
    bvals, bvecs = [np.full(n_b0, 5.0)], [np.zeros((n_b0, 3))]
    for b in SHELLS:
        v = rng.normal(size=(n_dirs, 3))
        bvecs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        bvals.append(b + rng.integers(-10, 11, n_dirs))
    return np.concatenate(bvals), np.concatenate(bvecs)


def make_volume(shape, bvals, bvecs, rng, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y, Z, N)`` float32 Rician-noisy signal of random tensors in an ellipsoid, and the mask.

    Simulated in chunks of voxels so that an HCP-size volume needs little more than its float32 size.
    """
    grid = np.meshgrid(*[(np.arange(s) - (s - 1) / 2) / (s / 2) for s in shape], indexing="ij")
    mask = sum(g**2 for g in grid) <= 0.85
    idx = np.flatnonzero(mask)
    data = np.zeros((int(np.prod(shape)), len(bvals)), dtype=np.float32)
    for start in range(0, len(idx), chunk):
        n = len(idx[start : start + chunk])
        l1 = rng.uniform(0.8e-3, 2.2e-3, n)
        l2 = l1 * rng.uniform(0.15, 1.0, n)
        l3 = l2 * rng.uniform(0.5, 1.0, n)
        q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
        d = np.einsum("vij,vj,vkj->vik", q, np.stack([l1, l2, l3], 1), q)
        sig = S0 * np.exp(-bvals[None] * np.einsum("ni,vij,nj->vn", bvecs, d, bvecs))
        noisy = np.hypot(sig + rng.normal(0, SIGMA, sig.shape), rng.normal(0, SIGMA, sig.shape))
        data[idx[start : start + n]] = noisy
    return data.reshape(*shape, len(bvals)), mask


class PeakRSS:
    """Largest resident-set growth (MiB) over the block, sampled every 5 ms in a thread."""

    def __enter__(self) -> PeakRSS:
        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], float, object, list[float]]:
    """Run ``fn`` ``repeats`` times; return the wall times (s), the peak RSS growth (MiB), the last
    result and the process CPU times (s; steadier than wall time on a shared machine)."""
    times, cpu, peak, out = [], [], 0.0, None
    for _ in range(repeats):
        out = None  # let the previous result go before measuring the next
        with PeakRSS() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        peak = max(peak, mem.mib)
    return times, peak, out, cpu


def versions() -> dict[str, str]:
    import dipy
    import monai

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dipy": dipy.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "nibabel": nib.__version__,
    }


def machine(device: str) -> dict[str, object]:
    from hcp_cam.io import _fast_gzip_open

    gz_open = _fast_gzip_open()
    info = {
        "platform": platform.platform(),
        "gzip_decoder": "zlib (nibabel)" if gz_open is None else gz_open.__module__,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def run(args: argparse.Namespace) -> dict[str, object]:
    from hcp_cam.transforms import DTIFit, LoadDWI  # MONAI's start-up only where they are used

    if args.threads:
        torch.set_num_threads(args.threads)
    size = "smoke" if args.smoke else args.size
    shape, n_b0, n_dirs = SIZES[size]
    repeats = 1 if args.smoke else args.repeats
    rng = np.random.default_rng(args.seed)
    bvals, bvecs = make_gradients(n_b0, n_dirs, rng)
    data, mask = make_volume(shape, bvals, bvecs, rng)
    n_mask = int(mask.sum())

    with tempfile.TemporaryDirectory(prefix="bench-fa-") as tmp:
        tmp = Path(tmp)
        dwi_p = tmp / "dwi.nii.gz"
        nib.save(nib.Nifti1Image(data, np.diag([-1.25, 1.25, 1.25, 1.0])), str(dwi_p))
        np.savetxt(tmp / "dwi.bval", bvals[None], fmt="%g")
        np.savetxt(tmp / "dwi.bvec", bvecs.T, fmt="%.8f")
        mask_p = tmp / "mask.nii.gz"
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.diag([-1.25, 1.25, 1.25, 1.0])), str(mask_p))
        del data
        file_mib = dwi_p.stat().st_size / 2**20

        load = LoadDWI()
        decode_t, decode_mem, loaded, decode_c = timed(lambda: load(dwi_p, mask=mask_p), repeats)
        dwi, brain = loaded
        fit_torch = DTIFit(backend="torch", device=args.device, chunk_size=args.chunk_size, dtype=args.dtype)
        fit_dipy = DTIFit(backend="dipy", chunk_size=args.chunk_size)
        torch_t, torch_mem, fa_torch, torch_c = timed(lambda: fit_torch(dwi, brain)["fa"], repeats)
        dipy_t, dipy_mem, fa_dipy, dipy_c = (
            ([float("nan")], float("nan"), None, [float("nan")])
            if args.skip_dipy
            else timed(lambda: fit_dipy(dwi, brain)["fa"], repeats)
        )

    med = {k: statistics.median(v) for k, v in (("decode", decode_t), ("torch", torch_t), ("dipy", dipy_t))}
    dfa = (
        float("nan")
        if fa_dipy is None
        else float((fa_torch - fa_dipy).abs()[0][torch.from_numpy(mask)].max())
    )
    return {
        "machine": machine(str(fit_torch.device)),
        "versions": versions(),
        "sizes": {
            "name": size,
            "shape": list(shape),
            "n_volumes": len(bvals),
            "shells": [0, *SHELLS],
            "n_mask_voxels": n_mask,
            "nii_gz_mib": round(file_mib, 2),
            "repeats": repeats,
            "dtype": str(args.dtype).replace("torch.", ""),
            "dwi_mib": round(int(np.prod(shape)) * len(bvals) * 4 / 2**20, 1),
            "chunk_size": args.chunk_size,
        },
        "times_s": {"decode": decode_t, "torch": torch_t, "dipy": dipy_t},
        "median_s": med,
        "cpu_s": {"decode": decode_c, "torch": torch_c, "dipy": dipy_c},
        "voxels_per_s": {k: n_mask / med[k] for k in ("torch", "dipy")},
        "ratio_dipy_over_torch": med["dipy"] / med["torch"],
        "max_abs_dfa_in_mask": dfa,
        "peak_rss_mib": {"decode": decode_mem, "torch": torch_mem, "dipy": dipy_mem},
        "decode_mb_per_s": int(np.prod(shape)) * len(bvals) * 4 / 1e6 / med["decode"],
        "end_to_end_s": {
            "decode": med["decode"],
            "fit_torch": med["torch"],
            "total": med["decode"] + med["torch"],
        },
    }


def table(r: dict[str, object]) -> str:
    s, med, vps, mem = r["sizes"], r["median_s"], r["voxels_per_s"], r["peak_rss_mib"]
    lines = [
        f"FA benchmark: {s['shape']} x {s['n_volumes']} volumes, {s['n_mask_voxels']} brain voxels, "
        f"device {r['machine']['device']} ({r['machine']['torch_threads']} threads), {s['dtype']}, "
        f"median of {s['repeats']}; DWI {s['dwi_mib']} MiB in float32",
        f"{'step':<16}{'median s':>10}{'voxels/s':>12}{'peak RSS MiB':>14}",
        f"{'decode .nii.gz':<16}{med['decode']:>10.3f}{'':>12}{mem['decode']:>14.1f}"
        f"   ({r['decode_mb_per_s']:.0f} MB/s, {r['machine']['gzip_decoder']})",
        f"{'fit torch':<16}{med['torch']:>10.3f}{vps['torch']:>12.0f}{mem['torch']:>14.1f}",
        f"{'fit dipy':<16}{med['dipy']:>10.3f}{vps['dipy']:>12.0f}{mem['dipy']:>14.1f}",
        f"speed ratio dipy/torch: {r['ratio_dipy_over_torch']:.1f}x   max |dFA| in mask: {r['max_abs_dfa_in_mask']:.2e}",
    ]
    return "\n".join(lines)


def plot(jsons: list[Path], out: Path) -> Path:
    """Fit time against brain voxels (torch and DIPY) from saved ``--json`` results, as a PNG."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hcp_cam.reports.plots import save_figure

    runs = sorted((json.loads(Path(j).read_text()) for j in jsons), key=lambda r: r["sizes"]["n_mask_voxels"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for step, label in (("torch", "torch WLS"), ("dipy", "DIPY WLS"), ("decode", "decode .nii.gz")):
        pts = [
            (r["sizes"]["n_mask_voxels"], r["median_s"][step])
            for r in runs
            if math.isfinite(r["median_s"][step])  # --skip-dipy leaves NaN
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    for r in runs:  # the sizes differ in volumes too
        ax.annotate(f"{r['sizes']['n_volumes']} vols", (r["sizes"]["n_mask_voxels"], r["median_s"]["decode"]))
    m = runs[-1]["machine"]
    ax.set(xlabel="brain voxels", ylabel="median seconds", xscale="log", yscale="log")
    ax.set_title(f"FA: {m['processor']}, {m['torch_threads']} torch threads", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--size", choices=("small", "half", "hcp"), default="small", help="volume size (default small)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (DIPY is single-threaded)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs per step; the median is reported")
    p.add_argument("--device", default="cpu", help="torch device of the torch backend (cpu, cuda)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="torch compute dtype")
    p.add_argument("--chunk-size", type=int, default=200_000, help="voxels per batch")
    p.add_argument("--skip-dipy", action="store_true", help="time the torch backend only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write every number to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny volume, one repeat: a seconds-long check")
    p.add_argument(
        "--plot", type=Path, help="draw time vs voxels from the --from JSON files to this PNG; no run"
    )
    p.add_argument("--from", dest="from_json", type=Path, nargs="+", default=[], help="JSON results to plot")
    args = p.parse_args(argv)
    if args.plot and not args.from_json:
        p.error("--plot needs --from JSON [JSON ...]")
    args.dtype = getattr(torch, args.dtype)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot:
        print(plot(args.from_json, args.plot))
        return 0
    result = run(args)
    if args.json:
        write_json_atomic(result, args.json)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
