"""Benchmark training throughput: the bundle's data pipelines against the same model on tensors in memory.

Two pipelines, as ``bundles/cam_dmri/configs/train.json`` wires them (``data_pipeline``), both on
slice items from :class:`hcp_cam.transforms.Slices25Dd` (ground-truth FA of
:func:`hcp_cam.synth.make_subject` volumes):

- ``monai``: the train ``Compose`` of ``hcp_cam.training.data.build_transforms(spatial_dims=2)``
  through a MONAI ``CacheDataset`` (the deterministic head is cached, the random tail runs per
  sample on the CPU) and a shuffling ``DataLoader``; batches are copied to the device;
- ``device``: :class:`hcp_cam.training.device.SliceCache` (the eval chain once per slice,
  all slices on the device) and :class:`~hcp_cam.training.device.DeviceBatchLoader` with
  :class:`~hcp_cam.training.device.RandSliceAugment` (the random tail on whole batches
  on the device).

For each network, per repeat (interleaved, so load from other processes hits all alike):

- ``pipeline`` / ``device_pipeline``: ``--iterations`` training steps (forward, loss, backward,
  AdamW step) fed by the MONAI / device loader;
- ``model_only``: the same steps on one batch already on the device (the ceiling of a pipeline);
- ``data_only`` / ``device_data_only``: the loader alone, no model.

Reported: medians over ``--repeats`` in slices/s and the ratios ``efficiency = pipeline /
model_only`` (MONAI) and ``device_efficiency = device_pipeline / model_only``. On CUDA, AMP
(float16 autocast with a gradient scaler) and channels-last are on for every row (``--amp``,
``--channels-last``), as the bundle's ``auto`` settings do. A table is printed last; ``--json``
writes every number with the machine and versions. Defaults are read from the bundle's ``train.json``
(``image_size``, ``network_width``, ``batch_size``, ``slices_per_axis``, ``num_workers``, and whether its
``initialize`` turns MetaTensor tracking off), so the benchmark times what the bundle runs.

    python benchmarks/bench_train.py --smoke --json /tmp/bench_train.json   # seconds
    python benchmarks/bench_train.py --arch all --iterations 20 --repeats 3  # minutes on 2 cores
    python benchmarks/bench_train.py --arch alexnet --num-workers 2          # the MONAI loader in workers
    python benchmarks/bench_train.py --arch all --device cuda --json train_cuda.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import monai
import numpy as np
import psutil
import torch
from monai.data import CacheDataset, DataLoader, MetaTensor, set_track_meta

from hcp_cam.io import write_json_atomic
from hcp_cam.networks import available_networks, get_network
from hcp_cam.synth import make_subject
from hcp_cam.synth.phantom import fa_from_diffusivities
from hcp_cam.training.data import build_transforms
from hcp_cam.training.device import DeviceBatchLoader, RandSliceAugment, SliceCache
from hcp_cam.transforms import PreprocessingParams, Slices25Dd

BUNDLE_TRAIN = Path(__file__).resolve().parents[1] / "bundles" / "cam_dmri" / "configs" / "train.json"


def bundle_defaults(path: Path = BUNDLE_TRAIN) -> dict[str, Any]:
    """The settings of the bundle's ``train.json`` that the benchmark mirrors (so its defaults cannot drift)."""
    cfg = json.loads(path.read_text())
    return {
        "image_size": int(cfg["image_size"]),
        "width": float(cfg["network_width"]),
        "batch_size": int(cfg["batch_size"]),
        "slices_per_axis": int(cfg["slices_per_axis"]),
        "num_workers": int(cfg["num_workers"]),
        "no_track_meta": "$monai.data.set_track_meta(False)" in cfg["initialize"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    bundle = bundle_defaults()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--arch", default="alexnet", help=f"network name or 'all' ({', '.join(available_networks())})"
    )
    p.add_argument(
        "--image-size", type=int, default=bundle["image_size"], help="slice size S (the bundle's image_size)"
    )
    p.add_argument(
        "--width", type=float, default=bundle["width"], help="channel multiplier (the bundle's network_width)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=bundle["batch_size"],
        help="slices per step (the bundle's batch_size)",
    )
    p.add_argument("--iterations", type=int, default=20, help="timed training steps per repeat")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; medians are reported")
    p.add_argument("--subjects", type=int, default=4, help="synthetic FA volumes sliced into items")
    p.add_argument(
        "--slices-per-axis",
        type=int,
        default=bundle["slices_per_axis"],
        help="Slices25Dd k (the bundle's slices_per_axis)",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=bundle["num_workers"],
        help="DataLoader workers (the bundle's num_workers)",
    )
    p.add_argument("--persistent-workers", action="store_true", help="keep DataLoader workers across epochs")
    p.add_argument(
        "--no-track-meta",
        action="store_true",
        default=bundle["no_track_meta"],
        help="monai.data.set_track_meta(False) for the train pipeline (plain tensors, no affine tracking; "
        "the default when the bundle's initialize sets it)",
    )
    p.add_argument(
        "--track-meta", dest="no_track_meta", action="store_false", help="MetaTensors in the train pipeline"
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument(
        "--pipelines",
        default="monai,device",
        help="comma-separated data pipelines to time: monai, device (model-only is always timed)",
    )
    p.add_argument(
        "--amp",
        choices=("auto", "on", "off"),
        default="auto",
        help="float16 autocast + GradScaler for every row (auto: on for CUDA; CUDA only)",
    )
    p.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="network in channels-last memory format for every row (auto: on for CUDA)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write every number to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: a seconds-long check")
    p.add_argument(
        "--plot", help="draw slices/s vs batch size from the --from JSON files to this PNG; no run"
    )
    p.add_argument("--from", dest="from_json", nargs="+", default=[], help="JSON results to plot")
    args = p.parse_args(argv)
    if args.plot and not args.from_json:
        p.error("--plot needs --from JSON [JSON ...]")
    if args.arch != "all" and args.arch not in available_networks():
        p.error(f"unknown --arch {args.arch!r}; choose 'all' or one of {available_networks()}")
    pipelines = [x.strip() for x in args.pipelines.split(",") if x.strip()]
    if not pipelines or set(pipelines) - {"monai", "device"}:
        p.error(f"--pipelines takes monai and/or device, got {args.pipelines!r}")
    args.pipelines = [x for x in ("monai", "device") if x in pipelines]
    is_cuda = torch.device(args.device).type == "cuda"
    if args.amp == "on" and not is_cuda:
        p.error("--amp on needs --device cuda (the bundle's engines autocast CUDA only)")
    args.use_amp = args.amp == "on" or (args.amp == "auto" and is_cuda)
    args.use_channels_last = args.channels_last == "on" or (args.channels_last == "auto" and is_cuda)
    for name in ("image_size", "batch_size", "iterations", "repeats", "subjects", "slices_per_axis"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.smoke:
        args.image_size, args.width, args.batch_size = 32, 0.125, 4
        args.iterations, args.repeats, args.subjects, args.slices_per_axis = 2, 1, 1, 2
    return args


def make_items(n_subjects: int, k: int, seed: int) -> list[dict[str, Any]]:
    """Slice items as ``PreparedData.items`` makes them: ``image``/``mask`` ``(1, H, W)`` MetaTensors."""
    slicer = Slices25Dd(keys="image", mask_key="mask", selection="centre", k=k)
    items: list[dict[str, Any]] = []
    for i in range(n_subjects):
        group = ("young", "old")[i % 2]
        subj = make_subject(subject=f"{100000 + i}", group=group, seed=seed + i, snr=None)
        ph = subj.phantom
        fa = torch.from_numpy(fa_from_diffusivities(ph.ad, ph.rd).astype(np.float32))[None]
        affine = torch.as_tensor(subj.affine)
        item = {
            "image": MetaTensor(fa, affine=affine),
            "mask": MetaTensor(torch.from_numpy(ph.mask.astype(np.uint8))[None], affine=affine),
            "label": i % 2,
            "subject": subj.subject,
            "acquisition": "dir95",
        }
        items.extend(slicer(item))
    return items


def _worker_init(track_meta: bool, worker_id: int) -> None:
    """DataLoader workers follow the main process's ``set_track_meta`` (also under ``spawn``)."""
    set_track_meta(track_meta)


def loop(loader: DataLoader | DeviceBatchLoader) -> Iterator[dict[str, Any]]:
    """Batches for ever (a new shuffled epoch whenever one ends)."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def train_steps(
    net,
    opt,
    loss_fn,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    n: int,
    device,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """Seconds for ``n`` training steps over ``batches`` (float16 autocast when ``scaler`` is given)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            with torch.autocast(device.type, dtype=torch.float16):
                loss = loss_fn(net(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
    sync()
    return time.perf_counter() - t0


def data_steps(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], n: int, device) -> float:
    """Seconds for ``n`` batches of a loader alone (on the device, synchronised at the end)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        x, _y = next(batches)
        x.to(device, non_blocking=True)
    sync()
    return time.perf_counter() - t0


def bench_arch(
    arch: str, items: list[dict], args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    net = get_network(arch, spatial_dims=2, in_channels=1, num_classes=2, width=args.width).to(device)
    if args.use_channels_last:
        net = net.to(memory_format=torch.channels_last)
    size = max(args.image_size, int(getattr(net, "min_input_size", 1)))
    params = PreprocessingParams(image_size=size)  # one declaration for both pipelines, as the bundle's
    train_tf, eval_tf = build_transforms(spatial_dims=2, params=params)
    track = not args.no_track_meta
    set_track_meta(track)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type) if args.use_amp else None
    streams: dict[str, Iterator[tuple[torch.Tensor, torch.Tensor]]] = {}
    cache_s: dict[str, float] = {}
    if "monai" in args.pipelines:
        t0 = time.perf_counter()
        ds = CacheDataset(items, transform=train_tf, cache_rate=1.0, progress=False, num_workers=0)
        cache_s["monai"] = time.perf_counter() - t0
        workers = args.num_workers
        loader = DataLoader(
            ds,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=args.persistent_workers and workers > 0,
            worker_init_fn=functools.partial(_worker_init, track) if workers > 0 else None,
        )
        streams["monai"] = ((_plain(b["image"]), b["label"].long()) for b in loop(loader))
    if "device" in args.pipelines:
        t0 = time.perf_counter()
        cache = SliceCache.from_items(items, eval_tf, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        cache_s["device"] = time.perf_counter() - t0
        dev_loader = DeviceBatchLoader(
            cache,
            args.batch_size,
            shuffle=True,
            drop_last=True,
            augment=RandSliceAugment(params),
            seed=args.seed,
            world_size=1,
            channels_last=args.use_channels_last,
        )
        streams["device"] = ((b["image"], b["label"]) for b in loop(dev_loader))

    first = next(iter(streams.values()))
    x0, y0 = next(first)
    fixed = (x0.to(device), y0.to(device))

    def in_memory() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield fixed

    memory = in_memory()
    train_steps(net, opt, loss_fn, memory, 2, device, scaler)  # warm-up: allocator, kernels
    for stream in streams.values():
        train_steps(net, opt, loss_fn, stream, 1, device, scaler)
    prefix = {"monai": "", "device": "device_"}
    times: dict[str, list[float]] = {"model_only": []}
    for name in streams:
        times[f"{prefix[name]}pipeline"] = []
        times[f"{prefix[name]}data_only"] = []
    n = args.iterations
    for _ in range(args.repeats):  # interleaved, so that load from other processes hits all alike
        for name, stream in streams.items():
            times[f"{prefix[name]}pipeline"].append(train_steps(net, opt, loss_fn, stream, n, device, scaler))
        times["model_only"].append(train_steps(net, opt, loss_fn, memory, n, device, scaler))
        for name, stream in streams.items():
            times[f"{prefix[name]}data_only"].append(data_steps(stream, n, device))
    set_track_meta(True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: n * args.batch_size / v for k, v in med.items()}
    out: dict[str, Any] = {
        "arch": arch,
        "image_size": size,
        "n_items": len(items),
        "cache_s": cache_s,
        "parameters": sum(p.numel() for p in net.parameters()),
        "times_s": times,
        "median_s": med,
        "slices_per_s": rate,
    }
    if "monai" in streams:
        out["efficiency"] = rate["pipeline"] / rate["model_only"]
        out["data_share"] = med["data_only"] / med["pipeline"]
    if "device" in streams:
        out["device_efficiency"] = rate["device_pipeline"] / rate["model_only"]
        out["device_data_share"] = med["device_data_only"] / med["device_pipeline"]
    return out


def versions() -> dict[str, str]:
    import ignite

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "ignite": ignite.__version__,
        "numpy": np.__version__,
    }


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "device": str(device),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    monai.utils.set_determinism(seed=args.seed)
    items = make_items(args.subjects, args.slices_per_axis, args.seed)
    archs = available_networks() if args.arch == "all" else [args.arch]
    results = [bench_arch(a, items, args, device) for a in archs]
    return {
        "machine": machine(device),
        "versions": versions(),
        "settings": {
            k: getattr(args, k)
            for k in (
                "image_size",
                "width",
                "batch_size",
                "iterations",
                "repeats",
                "subjects",
                "slices_per_axis",
                "num_workers",
                "persistent_workers",
                "no_track_meta",
                "pipelines",
                "use_amp",
                "use_channels_last",
                "smoke",
            )
        },
        "results": results,
    }


def table(r: dict[str, Any]) -> str:
    s, m = r["settings"], r["machine"]
    lines = [
        f"Training throughput, slices/s (median of {s['repeats']} x {s['iterations']} steps), batch "
        f"{s['batch_size']}, width {s['width']}, device {m['device']}, {m['torch_threads']} threads, "
        f"amp {s.get('use_amp', False)}, channels_last {s.get('use_channels_last', False)}; monai: "
        f"num_workers {s['num_workers']}{' (persistent)' if s['persistent_workers'] else ''}, "
        f"track_meta {not s['no_track_meta']}",
        f"{'arch':<14}{'size':>5}  {'pipeline':<9}{'slices/s':>10}{'data only':>11}{'model only':>12}"
        f"{'ratio':>8}",
    ]
    for x in r["results"]:
        v = x["slices_per_s"]
        for name, prefix, ratio in (("monai", "", "efficiency"), ("device", "device_", "device_efficiency")):
            if ratio not in x:
                continue
            lines.append(
                f"{x['arch']:<14}{x['image_size']:>5}  {name:<9}{v[prefix + 'pipeline']:>10.1f}"
                f"{v[prefix + 'data_only']:>11.1f}{v['model_only']:>12.1f}{x[ratio]:>8.2f}"
            )
    return "\n".join(lines)


def plot(jsons: list[str], out: str) -> str:
    """Slices/s against batch size (pipeline, model only, data only) from saved ``--json`` results."""
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hcp_cam.reports.plots import save_figure

    runs = [json.loads(Path(j).read_text()) for j in jsons]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    styles = {
        "pipeline": "-o",
        "model_only": "--s",
        "data_only": ":^",
        "device_pipeline": "-D",
        "device_data_only": ":v",
    }
    for r in runs:
        tag = f"{'no meta' if r['settings']['no_track_meta'] else 'meta'}, w{r['settings']['num_workers']}"
        for x in r["results"]:
            for kind in [k for k in styles if k in x["slices_per_s"]]:
                note = "" if kind == "model_only" or kind.startswith("device") else f" ({tag})"
                key = (f"{x['arch']} {kind}{note}", kind)
                series.setdefault(key, []).append((r["settings"]["batch_size"], x["slices_per_s"][kind]))
    for (label, kind), pts in sorted(series.items()):
        pts = sorted(dict(pts).items())
        ax.plot(*zip(*pts, strict=True), styles[kind], label=label)
    m = runs[0]["machine"]
    ax.set(xlabel="batch size", ylabel="slices / s", xscale="log", yscale="log")
    ax.set_title(f"Training throughput: {m['processor']}, {m['torch_threads']} torch threads", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return out


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
