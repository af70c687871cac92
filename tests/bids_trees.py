"""Small BIDS and QSIPrep trees written by hand (real NIfTI and gradient files), for layout tests.

The synthetic generator (``hcp_cam.synth.generate_bids_dataset``) writes whole datasets; these
helpers write the odd cases a generator never makes: a run without gradients, an inherited file
with the wrong count, a participants table without a column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "N_VOLUMES",
    "write_dwi",
    "write_bval",
    "write_bvec",
    "write_gradients",
    "bids_root",
    "write_table",
]

N_VOLUMES = 7


def write_dwi(path: Path, n: int = N_VOLUMES, shape: Sequence[int] = (4, 4, 4)) -> Path:
    """A real ``(*shape, n)`` float32 NIfTI with a rigid 2 mm affine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).uniform(100, 1000, size=(*shape, n)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return path


def write_bval(path: Path, n: int = N_VOLUMES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(["0"] + ["1000"] * (n - 1)) + "\n")
    return path


def write_bvec(path: Path, n: int = N_VOLUMES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    v = np.random.default_rng(1).normal(size=(3, n))
    v /= np.linalg.norm(v, axis=0)
    v[:, 0] = 0
    path.write_text("\n".join(" ".join(f"{x:.6f}" for x in row) for row in v) + "\n")
    return path


def write_gradients(stem: Path, n: int = N_VOLUMES) -> tuple[Path, Path]:
    """``<stem>.bval`` and ``<stem>.bvec``."""
    return write_bval(Path(f"{stem}.bval"), n), write_bvec(Path(f"{stem}.bvec"), n)


def write_table(path: Path, rows: Sequence[Sequence[str]], sep: str = "\t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(r) + "\n" for r in rows))
    return path


def bids_root(
    root: Path, derivative: bool = False, participants: Sequence[Sequence[str]] | None = None
) -> Path:
    """``dataset_description.json`` (raw, or a derivative) and optionally ``participants.tsv``."""
    root.mkdir(parents=True, exist_ok=True)
    desc = {"Name": "test", "BIDSVersion": "1.9.0", "DatasetType": "derivative" if derivative else "raw"}
    if derivative:
        desc["GeneratedBy"] = [{"Name": "qsiprep"}]
    (root / "dataset_description.json").write_text(json.dumps(desc))
    if participants is not None:
        write_table(root / "participants.tsv", participants)
    return root
