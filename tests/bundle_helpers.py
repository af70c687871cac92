"""Helpers for the bundle tests: a tiny synthetic dataset and the bundle run as a real subprocess.

Every bundle test runs ``python -m monai.bundle run ...`` (or ``torchrun``) the way a user does,
with overrides that keep a run to a few seconds on two CPU cores (:data:`TINY`), and with the
dataset, FA cache and outputs in pytest's temporary folders, never in the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "REPO_ROOT",
    "BUNDLE",
    "CONFIGS",
    "TRAIN",
    "EVALUATE",
    "INFERENCE",
    "TINY",
    "TINY_SUBJECTS",
    "TinyData",
    "make_tiny_dataset",
    "bundle_env",
    "bundle_args",
    "run_bundle",
    "output_of",
    "tree_snapshot",
    "BatchRecorder",
    "batch_recorder_overlay",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "bundles" / "cam_dmri"
CONFIGS = BUNDLE / "configs"
# the model-zoo way: evaluate.json and inference.json are overlays of train.json
TRAIN = CONFIGS / "train.json"
EVALUATE = [TRAIN, CONFIGS / "evaluate.json"]
INFERENCE = [TRAIN, CONFIGS / "inference.json"]

# small enough for a few seconds per run; image_size 48 is above every network's minimum (43)
TINY: dict[str, Any] = {
    "image_size": 48,
    "network_width": 0.125,
    "epochs": 2,
    "batch_size": 16,
    "slices_per_axis": 4,
}
TINY_SUBJECTS = 10
TINY_SHAPE = (24, 28, 24)


@dataclass(frozen=True)
class TinyData:
    """A synthetic dataset made once per test session, and the FA cache the runs share.

    Attributes:
        dataset_dir: dataset root (``participants.csv``, HCP minimal layout, ``derivatives/ground_truth``).
        cache_dir: the bundle's ``cache_dir`` (FA maps computed once, reused by every run).
    """

    dataset_dir: Path
    cache_dir: Path


def make_tiny_dataset(root: str | os.PathLike, n_subjects: int = TINY_SUBJECTS, seed: int = 0) -> TinyData:
    """Write a small synthetic dataset (``n_subjects`` of shape ``TINY_SHAPE``) under ``root``."""
    from hcp_cam.synth import generate_dataset

    root = Path(root)
    generate_dataset(root / "data", n_subjects=n_subjects, shape=TINY_SHAPE, seed=seed, progress=False)
    (root / "cache").mkdir(parents=True, exist_ok=True)
    return TinyData(dataset_dir=root / "data", cache_dir=root / "cache")


def bundle_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a bundle subprocess: one thread each (the CI machine has two cores),
    matplotlib headless with a private config folder, and the repository importable."""
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": env.get("MPLCONFIGDIR") or tempfile.mkdtemp(prefix="hcp-cam-mpl-"),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
            "TQDM_DISABLE": "1",
        }
    )
    if extra:
        env.update(extra)
    return env


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


def bundle_args(
    output_dir: str | os.PathLike | None, data: TinyData | None, overrides: Mapping[str, Any] | None = None
) -> list[str]:
    """``--key value`` overrides: the tiny settings, the data and cache folders, ``overrides`` last."""
    settings: dict[str, Any] = dict(TINY)
    if data is not None:
        settings.update({"dataset_dir": str(data.dataset_dir), "cache_dir": str(data.cache_dir)})
    if output_dir is not None:
        settings["output_dir"] = str(output_dir)
    settings.update(overrides or {})
    args: list[str] = []
    for k, v in settings.items():
        args += [f"--{k}", _value(v)]
    return args


def run_bundle(
    run_id: str,
    config_file: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike | None,
    data: TinyData | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    cwd: str | os.PathLike = REPO_ROOT,
    timeout: float = 600.0,
    launcher: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run <run_id> --config_file ...`` with the tiny settings.

    Args:
        run_id: ``training``, ``evaluating`` or ``inference``.
        config_file: one file, or several (passed as MONAI's ``"['a','b']"`` list).
        output_dir, data, overrides: see :func:`bundle_args`.
        cwd: where the command runs (the repository root, as in the user's command).
        timeout: seconds before the run is killed (``subprocess.TimeoutExpired``).
        launcher: replaces ``python`` (e.g. ``torchrun --nproc_per_node=2``).
        env: extra environment variables.

    Returns:
        the ``CompletedProcess`` with ``stdout`` and ``stderr`` as text.
    """
    if isinstance(config_file, (str, os.PathLike)):
        cfg = str(config_file)
    else:
        cfg = "[" + ",".join(f"'{c}'" for c in config_file) + "]"
    head = list(launcher) if launcher else [sys.executable]
    cmd = [*head, "-m", "monai.bundle", "run", run_id, "--config_file", cfg]
    cmd += bundle_args(output_dir, data, overrides)
    return subprocess.run(
        cmd, cwd=str(cwd), env=bundle_env(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def output_of(proc: subprocess.CompletedProcess) -> str:
    """stdout and stderr of a finished run, for asserts and failure messages."""
    return f"{proc.stdout or ''}\n{proc.stderr or ''}"


def tree_snapshot(root: str | os.PathLike) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): to check that a failing run wrote nothing."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class BatchRecorder:
    """An ignite handler (``ITERATION_COMPLETED``) that appends, per rank, the slices each training
    batch held to ``<out_dir>/batches_rank<R>.jsonl``: one line ``{"epoch", "keys"}`` per batch,
    a key being ``subject/axis/index`` (unique per slice). It observes the run, changes nothing."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)

    def __call__(self, engine: Any) -> None:
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        batch = engine.state.batch
        if isinstance(batch, list):
            keys = [f"{r['subject']}/{int(r['axis'])}/{int(r['index'])}" for r in batch]
        else:  # collated: lists/tensors of length B
            keys = [
                f"{s}/{int(a)}/{int(i)}"
                for s, a, i in zip(batch["subject"], batch["axis"], batch["index"], strict=True)
            ]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"batches_rank{rank}.jsonl", "a") as f:
            f.write(json.dumps({"epoch": engine.state.epoch, "keys": keys}) + "\n")


def batch_recorder_overlay(
    path: str | os.PathLike, record_dir: str | os.PathLike, base_config: str | os.PathLike
) -> Path:
    """Write a config overlay whose ``training`` is ``base_config``'s with :class:`BatchRecorder`
    attached to the trainer first (``run training`` runs that list, nothing else changes).

    Appended to the user's ``--config_file`` list; ``tests/`` must be on ``PYTHONPATH``.
    """
    attach = "$@train#trainer.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED, @batch_recorder)"
    overlay = {
        "batch_recorder": {"_target_": "bundle_helpers.BatchRecorder", "out_dir": str(record_dir)},
        "training": [attach, *json.loads(Path(base_config).read_text())["training"]],
    }
    path = Path(path)
    path.write_text(json.dumps(overlay, indent=4) + "\n")
    return path
