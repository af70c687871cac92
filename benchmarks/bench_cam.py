"""Time CAM against a plain forward pass and MONAI's Grad-CAM on the same batch.

CAM needs the last feature maps and the classifier weights only, so computing it should cost about
one forward pass: the target is ``CAM / forward <= 1.1``. Grad-CAM adds a backward pass.

    python benchmarks/bench_cam.py --arch alexnet --batch 8 --image-size 128 --repeats 10 --json cam.json
    python benchmarks/bench_cam.py --smoke --json /tmp/cam.json   # seconds, for the test suite

Timings are medians over ``--repeats`` after one warm-up call each; the table is printed last.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import monai
import numpy as np
import torch
from monai.visualize import GradCAM

from hcp_cam.cam import CAMInferer
from hcp_cam.io import write_json_atomic
from hcp_cam.networks import available_networks, get_network

TARGET_RATIO = 1.1
SMOKE = {"batch": 2, "width": 0.0625, "repeats": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--arch", default="alexnet", choices=available_networks(), help="network name (get_network)"
    )
    p.add_argument("--spatial-dims", type=int, default=2, choices=(2, 3), help="2 for slices, 3 for volumes")
    p.add_argument("--batch", type=int, default=8, help="batch size")
    p.add_argument(
        "--image-size", type=int, default=None, help="input voxels per axis (default 128, smoke: minimum)"
    )
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of the network")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per method (median reported)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--json", dest="json_out", default=None, help="write the results here as JSON")
    p.add_argument("--smoke", action="store_true", help=f"tiny run for tests: {SMOKE}, smallest input")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.batch < 1 or args.repeats < 1:
        p.error("--batch and --repeats must be >= 1")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` rounds after one untimed warm-up call each.

    The functions take turns within every round, so a slow spell of a shared machine hits them all.
    """
    for fn in fns.values():
        fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def versions() -> dict[str, str]:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the network and batch, time the three passes, return the result dictionary."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = get_network(args.arch, spatial_dims=args.spatial_dims, width=args.width).to(device).eval()
    size = args.image_size or (net.min_input_size if args.smoke else 128)
    x = torch.randn(args.batch, 1, *[size] * args.spatial_dims, device=device)
    cam = CAMInferer("cam")
    # MONAI's hooks stay on the module they wrap: give them a copy; identity postprocessing (raw maps)
    gradcam = GradCAM(copy.deepcopy(net), target_layers=net.cam_layers()[0], postprocessing=lambda m: m)

    def forward() -> None:
        with torch.no_grad():
            net(x)

    timings = time_calls(
        {"forward": forward, "cam": lambda: cam(x, net), "gradcam_monai": lambda: gradcam(x)},
        args.repeats,
        device,
    )
    medians = {k: statistics.median(v) for k, v in timings.items()}
    ratio = medians["cam"] / medians["forward"]
    return {
        "config": {
            "arch": args.arch,
            "spatial_dims": args.spatial_dims,
            "batch": args.batch,
            "image_size": size,
            "width": args.width,
            "repeats": args.repeats,
            "smoke": bool(args.smoke),
        },
        "machine": machine_info(device),
        "versions": versions(),
        "median_s": medians,
        "timings_s": timings,
        "ratio_cam_forward": ratio,
        "ratio_gradcam_forward": medians["gradcam_monai"] / medians["forward"],
        "target_ratio_cam_forward": TARGET_RATIO,
        "meets_target": bool(ratio <= TARGET_RATIO),
    }


def format_table(result: dict[str, Any]) -> str:
    fwd = result["median_s"]["forward"]
    lines = [f"{'pass':<16}{'median ms':>12}{'x forward':>12}"]
    for name, label in [("forward", "forward"), ("cam", "CAM (ours)"), ("gradcam_monai", "Grad-CAM MONAI")]:
        t = result["median_s"][name]
        lines.append(f"{label:<16}{t * 1e3:>12.2f}{t / fwd:>12.2f}")
    verdict = "meets" if result["meets_target"] else "misses"
    lines.append(f"CAM/forward {result['ratio_cam_forward']:.2f} {verdict} the target <= {TARGET_RATIO}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json_out:
        write_json_atomic(result, args.json_out)
    cfg = result["config"]
    print(
        f"{cfg['arch']} {cfg['spatial_dims']}D, batch {cfg['batch']}, {cfg['image_size']} voxels/axis, "
        f"width {cfg['width']}, {cfg['repeats']} repeats on {result['machine']['device']}"
    )
    print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
