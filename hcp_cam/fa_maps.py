"""FA maps on disk: one acquisition (like FSL ``dtifit``) or a whole dataset, computed once.

The dataset cache is ``<out_dir>/<subject>/<acquisition>_fa.nii.gz``. A map is written under a
temporary name and renamed when complete (:func:`hcp_cam.io.atomic_path`), so an existing file
is always a whole map and a second run recomputes nothing; a killed run leaves at most a hidden
``.<name>.*.tmp.nii.gz`` that no later run mistakes for a result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import torch
from tqdm.auto import tqdm

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.io import save_nifti_like
from hcp_cam.transforms.dwi import LoadDWI
from hcp_cam.transforms.tensor_fit import DTIFit

__all__ = ["compute_fa_file", "compute_dataset_fa", "fa_cache_path", "metric_paths", "parse_shard"]

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike
_DESCRIPTIONS = {
    "fa": "FA (dimensionless), DTI WLS",
    "md": "MD mm^2/s, DTI WLS",
    "ad": "AD mm^2/s, DTI WLS",
    "rd": "RD mm^2/s, DTI WLS",
    "v1": "V1 unit vector, voxel axes",
    "color_fa": "|V1|*FA, voxel axes",
}


def _strip_nifti(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def metric_paths(out: PathLike, metrics: Sequence[str]) -> dict[str, Path]:
    """Output file of each metric: FA at ``out``, others at ``<out stem>_<metric>.nii.gz``.

    A stem ending in ``_fa`` is cut first, so ``sub_fa.nii.gz`` gives ``sub_md.nii.gz``.
    """
    out = Path(out)
    stem = _strip_nifti(out)
    base = stem[: -len("_fa")] if stem.endswith("_fa") else stem
    return {m: out if m == "fa" else out.with_name(f"{base}_{m}.nii.gz") for m in metrics}


def compute_fa_file(
    dwi: PathLike,
    bvals: PathLike | None,
    bvecs: PathLike | None,
    mask: PathLike | None,
    out: PathLike,
    backend: str = "torch",
    device: str | torch.device | None = None,
    metrics: Sequence[str] = ("fa",),
) -> dict[str, Path]:
    """Fit the tensor to one DWI and write FA (and other maps) with the DWI's exact geometry.

    Args:
        dwi: 4D ``.nii``/``.nii.gz``.
        bvals: FSL b-values; with ``bvecs`` None, found beside ``dwi``.
        bvecs: FSL directions (3 x N or N x 3).
        mask: 3D brain mask; None fits every voxel.
        out: the FA file (``.nii.gz``); other metrics go to ``<out stem>_<metric>.nii.gz``.
        backend: "torch" or "dipy" (see :class:`~hcp_cam.transforms.DTIFit`).
        device: torch device; None picks CUDA when available.
        metrics: maps to write; FA is always written.

    Returns:
        metric -> written path. FA ``(X, Y, Z)`` float32; MD/AD/RD in mm^2/s; V1 and colour FA
        ``(X, Y, Z, 3)``; all with the affine, sform/qform and voxel sizes of ``dwi``.

    Raises:
        InputError: any bad input (see :class:`~hcp_cam.transforms.LoadDWI`); nothing is written.
        ConfigError: unknown metric or backend.
    """
    metrics = tuple(dict.fromkeys(("fa", *metrics)))
    fitter = DTIFit(metrics=metrics, backend=backend, device=device)  # bad options fail before any I/O
    paths = metric_paths(out, metrics)
    if Path(dwi).resolve() in {p.resolve() for p in paths.values()}:
        raise InputError("output would overwrite the input DWI", out)
    image, brain = LoadDWI()(dwi, bvals=bvals, bvecs=bvecs, mask=mask)
    maps = fitter(image, brain)
    del image
    # the header only (lazy): geometry, sform/qform codes and zooms are copied from it
    reference = nib.load(str(dwi))
    for metric, path in paths.items():
        arr = maps[metric].numpy()  # (C, X, Y, Z)
        data = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 3, 0)
        save_nifti_like(data, reference, path, description=_DESCRIPTIONS[metric])
    return paths


def fa_cache_path(out_dir: PathLike, subject: str, acquisition: str) -> Path:
    """Cache file of one acquisition's FA: ``<out_dir>/<subject>/<acquisition>_fa.nii.gz``."""
    for part, what in ((subject, "subject"), (acquisition, "acquisition")):
        if not part or "/" in part or "\\" in part or part in (".", ".."):
            raise InputError(f"{what} name {part!r} cannot be used as a file name", out_dir)
    return Path(out_dir) / subject / f"{acquisition}_fa.nii.gz"


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) into ``(i, n)``.

    Raises:
        ConfigError: not two integers with ``0 <= i < n``.
    """
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError as e:
        raise ConfigError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from e
    return _check_shard((i, n))


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    i, n = (int(v) for v in shard)
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard (i, n) needs 0 <= i < n, got ({i}, {n})")
    return i, n


def compute_dataset_fa(
    dataset_dir: PathLike,
    out_dir: PathLike,
    backend: str = "torch",
    device: str | torch.device | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    layout: str = "auto",
    index_dir: PathLike | None = None,
) -> list[Path]:
    """FA of every acquisition of a dataset, written once into a cache folder.

    Acquisitions come from :func:`hcp_cam.data.layouts.find_acquisitions` (any layout), sorted by
    ``(subject, acquisition)``; shard ``(i, n)`` takes every n-th one starting at the i-th, so n
    jobs with ``i = 0 .. n-1`` split the dataset without overlap. Existing cache files are kept.
    Raw BIDS DWIs get a brain mask computed beside their FA (``<acquisition>_mask.nii.gz``); given FA
    maps (layout ``fa``) are listed, not copied.

    Args:
        dataset_dir: dataset root.
        out_dir: cache root; files go to ``<out_dir>/<subject>/<acquisition>_fa.nii.gz``.
        backend: "torch" or "dipy". device: torch device; None picks CUDA when available.
        shard: ``(i, n)`` with ``0 <= i < n``.
        progress: show a tqdm progress bar.
        layout: the dataset's layout (see :data:`hcp_cam.data.layouts.DATASET_LAYOUTS`).
        index_dir: where pybids keeps a BIDS dataset's index; ``None``: in memory.

    Returns:
        The FA paths of this shard's acquisitions, in order (computed now, found in the cache, or given).

    Raises:
        InputError: from discovery or from a bad acquisition (maps already written stay).
        ConfigError: a bad shard, backend, device or layout.
    """
    from hcp_cam.data.fa_sources import acquisition_maps
    from hcp_cam.data.layouts import find_acquisitions

    i, n = _check_shard(shard)
    fitter_check = DTIFit(backend=backend, device=device)  # bad options fail before the first fit
    del fitter_check
    _, found = find_acquisitions(dataset_dir, layout, index_dir=index_dir)
    acquisitions = sorted(found, key=lambda a: (a.subject, a.acquisition))
    mine = acquisitions[i::n]
    paths: list[Path] = []
    computed = 0
    for acq in tqdm(mine, desc=f"FA {i}/{n}", unit="acq", disable=not progress):
        path, _, how = acquisition_maps(acq, out_dir, backend=backend, device=device)
        computed += how == "computed"
        paths.append(path)
    logger.info(
        "FA shard %d/%d: %d acquisitions, %d computed, %d cached or given",
        i,
        n,
        len(mine),
        computed,
        len(mine) - computed,
    )
    return paths
