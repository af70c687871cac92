"""benchmarks/bench_fa.py --smoke runs in a subprocess and writes the JSON keys it promises."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fa.py"


def test_bench_fa_smoke(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in (
        "machine",
        "versions",
        "sizes",
        "times_s",
        "median_s",
        "voxels_per_s",
        "ratio_dipy_over_torch",
        "max_abs_dfa_in_mask",
        "peak_rss_mib",
        "end_to_end_s",
    ):
        assert key in r, key
    assert set(r["versions"]) >= {"torch", "dipy", "monai", "numpy", "nibabel", "python"}
    assert r["sizes"]["n_mask_voxels"] > 0 and r["sizes"]["n_volumes"] > 6
    for k in ("decode", "torch", "dipy"):
        assert r["median_s"][k] > 0
    assert all(v > 0 for v in r["voxels_per_s"].values())
    assert math.isfinite(r["ratio_dipy_over_torch"]) and r["ratio_dipy_over_torch"] > 0
    assert 0 <= r["max_abs_dfa_in_mask"] < 1e-3  # the two backends agree on the benchmark volume
    assert r["end_to_end_s"]["total"] == r["median_s"]["decode"] + r["median_s"]["torch"]
    # the table comes last
    assert proc.stdout.strip().splitlines()[-1].startswith("speed ratio dipy/torch")


def test_threaded_cpu_fit_equals_the_serial_fit():
    """The torch fit splits a CPU run into tasks on a thread pool when torch has several threads;
    it must give exactly the serial result and give torch its thread count back."""
    import numpy as np
    import torch

    from hcp_cam.transforms import fit_tensor_torch

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_fa
    finally:
        sys.path.remove(str(SCRIPT.parent))
    rng = np.random.default_rng(1)
    bvals, bvecs = bench_fa.make_gradients(2, 12, rng)
    data, mask = bench_fa.make_volume((20, 22, 18), bvals, bvecs, rng)
    sig = torch.from_numpy(data[mask])
    assert sig.shape[0] > 3 * 8 * 64  # more than three tasks of 8 blocks of 64 voxels
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = fit_tensor_torch(sig, bvals, bvecs, chunk_size=64)
        torch.set_num_threads(2)
        threaded = fit_tensor_torch(sig, bvals, bvecs, chunk_size=64)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(serial[0], threaded[0]) and torch.equal(serial[1], threaded[1])
    assert (serial[0][:, 0] > 0).all()
