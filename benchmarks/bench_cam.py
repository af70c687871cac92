"""Time CAM against a plain forward pass and MONAI's Grad-CAM on the same batch.

CAM needs the last feature maps and the classifier weights only, so computing it should cost about
one forward pass: the target is ``CAM / forward <= 1.1``. Grad-CAM adds a backward pass.

    python benchmarks/bench_cam.py --arch alexnet --batch 8 --image-size 128 --repeats 10 --json cam.json
    python benchmarks/bench_cam.py --smoke --json /tmp/cam.json   # seconds, for the test suite
    python benchmarks/bench_cam.py --volume hcp --width 0.25 --image-size 96 --json cam_volume.json

``--volume hcp`` (145x174x145, the HCP FA grid) or ``--volume X,Y,Z`` adds the whole-brain CAM of one
subject: ``cam_volume`` on every slice with brain along the 3 axes (each axis's slices through the batched
eval chain, predicted class, CAM pass of ``--batch`` slices, maps inverted back, stacked and fused), against
the same with the MONAI chain and ``Invertd`` slice by slice (``batched=False``, the reference) and against
the network's share alone (the same slices, already at input size, through one CAM pass that gives the
logits and every class's map: the predicted class is picked afterwards).

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
from hcp_cam.cam.volume import cam_volume
from hcp_cam.io import write_json_atomic
from hcp_cam.networks import available_networks, get_network
from hcp_cam.transforms.augment import build_slice_transforms
from hcp_cam.transforms.slicing import slice_indices

TARGET_RATIO = 1.1
SMOKE = {"batch": 2, "width": 0.0625, "repeats": 2}
HCP_SHAPE = (145, 174, 145)
SMOKE_VOLUME = (20, 24, 20)


def parse_shape(text: str) -> tuple[int, int, int]:
    """``hcp`` or ``X,Y,Z`` -> a 3D grid shape."""
    if text == "hcp":
        return HCP_SHAPE
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 4:
        raise argparse.ArgumentTypeError(f"--volume takes 'hcp' or X,Y,Z (each >= 4), got {text!r}")
    return shape  # type: ignore[return-value]


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
    p.add_argument(
        "--volume",
        type=parse_shape,
        default=None,
        help="also time the whole-brain CAM of one volume: hcp or X,Y,Z",
    )
    p.add_argument("--volume-repeats", type=int, default=3, help="timed whole-volume runs (median reported)")
    p.add_argument("--json", dest="json_out", default=None, help="write the results here as JSON")
    p.add_argument("--smoke", action="store_true", help=f"tiny run for tests: {SMOKE}, smallest input")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.volume_repeats = 1
        if args.volume is not None:
            args.volume = SMOKE_VOLUME
    if args.batch < 1 or args.repeats < 1 or args.volume_repeats < 1:
        p.error("--batch, --repeats and --volume-repeats must be >= 1")
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


def synthetic_fa(shape: tuple[int, int, int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A brain-like FA ``(1, X, Y, Z)`` float32 in [0, 1) inside an ellipsoid mask ``(1, X, Y, Z)`` uint8
    filling ~44% of the grid (1.62 M voxels at HCP size; an HCP brain mask fills ~41%, 1.5 M)."""
    axes = [torch.linspace(-1.05, 1.05, n) for n in shape]
    gx, gy, gz = torch.meshgrid(*axes, indexing="ij")
    mask = (gx**2 + gy**2 + gz**2) <= 1.0
    fa = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 0.8 * mask
    return fa[None].float(), mask[None].to(torch.uint8)


def time_volume(
    net: torch.nn.Module,
    size: int,
    shape: tuple[int, int, int],
    batch: int,
    repeats: int,
    device: torch.device,
) -> dict[str, Any]:
    """Whole-brain CAM of one synthetic volume (every slice with brain, 3 axes) and its network share."""
    fa, mask = synthetic_fa(shape)
    _, eval_chain = build_slice_transforms(image_size=size)
    n_slices = sum(len(slice_indices(shape, mask[0], axis, "mask")) for axis in range(3))
    cam = CAMInferer("cam")
    x = torch.randn(n_slices, 1, size, size, device=device)

    def whole(batched: bool = True) -> None:
        cam_volume(
            fa, mask, net, cam, eval_chain, selection="mask", batch_size=batch, device=device, batched=batched
        )

    def network_only() -> None:
        # what cam_volume asks of the network for the predicted class: one CAM pass, every class's map
        for s in range(0, n_slices, batch):
            cam(x[s : s + batch], net, class_idx="all")

    fns = {"volume_cam": whole, "volume_cam_per_slice": lambda: whole(False), "volume_network": network_only}
    timings = time_calls(fns, repeats, device)
    medians = {k: statistics.median(v) for k, v in timings.items()}
    return {
        "shape": list(shape),
        "brain_voxels": int(mask.sum()),
        "slices": n_slices,
        "repeats": repeats,
        "median_s": medians,
        "timings_s": timings,
        "network_share": medians["volume_network"] / medians["volume_cam"],
        "speedup_batched": medians["volume_cam_per_slice"] / medians["volume_cam"],
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
    volume = None
    if args.volume is not None:
        volume = time_volume(net, size, args.volume, args.batch, args.volume_repeats, device)
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
        "volume": volume,
    }


def format_table(result: dict[str, Any]) -> str:
    fwd = result["median_s"]["forward"]
    lines = [f"{'pass':<16}{'median ms':>12}{'x forward':>12}"]
    for name, label in [("forward", "forward"), ("cam", "CAM (ours)"), ("gradcam_monai", "Grad-CAM MONAI")]:
        t = result["median_s"][name]
        lines.append(f"{label:<16}{t * 1e3:>12.2f}{t / fwd:>12.2f}")
    vol = result.get("volume")
    if vol:
        grid = "x".join(str(n) for n in vol["shape"])
        med = vol["median_s"]
        lines.append(
            f"whole brain {grid}, {vol['slices']} slices: {med['volume_cam']:.2f} s per subject batched, "
            f"{med['volume_cam_per_slice']:.2f} s slice by slice ({vol['speedup_batched']:.1f}x); "
            f"network alone {med['volume_network']:.2f} s ({vol['network_share']:.0%} of batched)"
        )
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
