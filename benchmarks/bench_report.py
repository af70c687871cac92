"""Size and writing time of the run report (``hcp-cam report``) at the demo size and at HCP size.

Builds a run folder of synthetic test subjects: FA of the synthetic phantom (``hcp_cam.synth``) with
Gaussian noise (sd ``--fa-noise``, as a fitted FA has; noise is what makes FA compress poorly), a
whole-brain CAM (a smooth random field over the brain: the worst case; the bundle's default
``coverage all`` knows a block only), its box and the ground-truth region, plus the metrics files. Then
writes the report and reports its bytes: in total, NiiVue's share, and the embedded volumes per subject.

    python benchmarks/bench_report.py --size demo --subjects 10 --json /tmp/report_demo.json
    python benchmarks/bench_report.py --size hcp --subjects 10          # ~1.5 GB of RAM, ~1 min
    python benchmarks/bench_report.py --smoke                           # seconds
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.ndimage import zoom

from hcp_cam.io import save_nifti_like, write_json_atomic
from hcp_cam.reports.embed import niivue_info
from hcp_cam.reports.provenance import package_versions
from hcp_cam.reports.run_report import run_report_html, write_run_report
from hcp_cam.synth import fa_from_diffusivities, make_affine, make_phantom

SIZES = {
    "smoke": ((20, 24, 20), (2.5, 2.5, 2.5)),
    "demo": ((40, 48, 40), (2.5, 2.5, 2.5)),  # hcp_cam.synth.DEFAULT_SHAPE
    "hcp": ((145, 174, 145), (1.25, 1.25, 1.25)),
}


def make_run_folder(
    root: Path, n_subjects: int, shape, voxel_size, fa_noise: float = 0.03, seed: int = 0
) -> Path:
    """A bundle-like run folder with ``n_subjects`` test subjects (the files the report reads)."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    affine = make_affine(shape, voxel_size)
    labels = ["young", "old"]
    rows, preds, entries = [], [], []
    for i in range(n_subjects):
        subject, group = f"{100000 + i}", labels[i % 2]
        ph = make_phantom(shape, voxel_size, rng=rng, effect=0.3 if group == "old" else 0.0)
        brain = ph.tissue > 0
        fa = np.where(
            brain, np.clip(fa_from_diffusivities(ph.ad, ph.rd) + rng.normal(0, fa_noise, shape), 0, 1), 0
        )
        ref = nib.Nifti1Image(fa.astype(np.float32), affine)
        ref.set_qform(affine, 1)
        ref.set_sform(affine, 1)
        sdir = run / "cam" / subject
        fa_path = root / "fa" / subject / "dwi_fa.nii.gz"
        save_nifti_like(fa, ref, fa_path)
        coarse = rng.normal(size=tuple(max(2, s // 12) for s in shape))
        field = zoom(coarse, [s / c for s, c in zip(shape, coarse.shape, strict=True)], order=3)[
            : shape[0], : shape[1], : shape[2]
        ]
        cam = np.where(brain, field, 0.0)
        cam01 = np.where(brain, (cam - cam[brain].min()) / np.ptp(cam[brain]), 0.0)
        save_nifti_like(cam01, ref, sdir / "dwi_cam01.nii.gz")
        peak = [int(v) for v in np.unravel_index(int(np.argmax(cam01)), shape)]
        lo = [max(0, p - 3) for p in peak]
        hi = [min(s - 1, p + 3) for p, s in zip(peak, shape, strict=True)]
        bbox = {"cam_class": "old", "predicted": group, "peak_voxel": peak,
                "peak_mm": nib.affines.apply_affine(affine, peak).tolist(),
                "box": {"ndim": 3, "empty": False, "min_index": lo, "max_index": hi}}  # fmt: skip
        write_json_atomic(bbox, sdir / "dwi_bbox.json")
        save_nifti_like(
            ph.roi,
            ref,
            root / "data" / "derivatives" / "ground_truth" / f"{subject}_roi.nii.gz",
            dtype=np.uint8,
        )
        rows.append({"split": "test", "subject": subject, "acquisition": "dwi", "group": group, "fa": str(fa_path),
                     "cam_class": "old", "predicted": group, "peak_mm": str(bbox["peak_mm"]), "box.empty": False,
                     "box.min_index": str(lo), "box.max_index": str(hi)})  # fmt: skip
        preds.append({"subject": subject, "label": i % 2, "group": group, "prob_young": 0.4, "prob_old": 0.6,
                      "predicted": 1, "predicted_group": "old", "correct": group == "old"})  # fmt: skip
        entries.append(
            {
                "subject": subject,
                "acquisition": "dwi",
                "group": group,
                "dwi": f"{subject}/T1w/Diffusion/data.nii.gz",
            }
        )
    pd.DataFrame(rows).to_csv(run / "cam" / "summary.csv", index=False)
    (run / "metrics").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(preds).to_csv(run / "metrics" / "test_subject_predictions.csv", index=False)
    write_json_atomic({"subject_accuracy": 0.5, "majority_baseline": 0.5, "n_subjects": n_subjects, "labels": labels},
                      run / "metrics" / "test_metrics.json")  # fmt: skip
    write_json_atomic({"arch": "alexnet", "dataset_dir": str(root / "data")}, run / "config.json")
    write_json_atomic(
        {"name": "bench", "groups": {"young": [8, 15], "old": [25, 75]}, "test": entries},
        run / "datalist.json",
    )
    return run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="demo")
    p.add_argument("--subjects", type=int, default=10)
    p.add_argument("--fa-noise", type=float, default=0.03)
    p.add_argument("--smoke", action="store_true", help="--size smoke --subjects 2")
    p.add_argument(
        "--keep", metavar="DIR", help="build the run folder and its report here instead of a temporary folder"
    )
    p.add_argument("--json", dest="json_out", help="write the results here as JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    size, n = ("smoke", 2) if args.smoke else (args.size, args.subjects)
    shape, voxel = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        t0 = time.perf_counter()
        run = make_run_folder(root, n, shape, voxel, fa_noise=args.fa_noise)
        t1 = time.perf_counter()
        out = write_run_report(run)
        t2 = time.perf_counter()
        _, stats = run_report_html(run)
        page = out.stat().st_size
    nv = niivue_info()["bytes"]
    result = {
        "config": {"size": size, "shape": list(shape), "voxel_size_mm": list(voxel), "subjects": n, "fa_noise": args.fa_noise, "smoke": args.smoke},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "versions": package_versions(("hcp-cam", "nibabel", "numpy")) | {"niivue": niivue_info()["version"]},
        "page_bytes": page,
        "niivue_bytes": nv,
        "volume_bytes": stats["volume_bytes"],
        "volume_bytes_per_subject": stats["volume_bytes"] / max(1, stats["n_scenes"]),
        "volume_bytes_by_layer": stats["volume_bytes_by_layer"],
        "scenes": stats["n_scenes"],
        "build_s": t1 - t0,
        "write_s": t2 - t1,
    }  # fmt: skip
    if args.json_out:
        write_json_atomic(result, args.json_out)
    mb = 1e6
    print(
        f"{'grid':>14} {'subjects':>8} {'page MB':>8} {'NiiVue MB':>9} {'volumes MB':>10} {'per subject MB':>14} {'write s':>7}"
    )
    print(f"{'x'.join(map(str, shape)):>14} {n:>8} {page / mb:>8.2f} {nv / mb:>9.2f} {stats['volume_bytes'] / mb:>10.2f} "
          f"{result['volume_bytes_per_subject'] / mb:>14.3f} {t2 - t1:>7.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
