"""FA maps on disk: one acquisition (like FSL ``dtifit``) or a whole dataset, computed once.

Imports torch, numpy and nibabel only: ``hcp-cam fa`` loads no MONAI module. The work is done by
the functional layer of :mod:`hcp_cam.transforms` (:func:`~hcp_cam.transforms.dwi_io.read_dwi`,
:func:`~hcp_cam.transforms.tensor_maps.fit_dti_maps`), which the MONAI transforms wrap too.
torch is imported only once the options and outputs are checked, while the DWI is being read in a
worker thread (the gzip decoder releases the GIL): a bad input is reported in well under a second,
and the ~2 CPU-seconds of torch's import overlap the decode.

Every output is checked before the DWI is read (extension, a folder in the way, a folder that
refuses writes, an output that is one of the inputs); the maps of one call are written under
temporary names and renamed together (:func:`hcp_cam.io.atomic_paths`): all or none. The dataset
cache and how its entries are validated: :mod:`hcp_cam.fa_cache`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
from tqdm.auto import tqdm

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.fa_cache import fa_cache_path
from hcp_cam.io import _fast_gzip_open, atomic_paths, check_not_inputs, check_output_path, nifti_like
from hcp_cam.transforms.dti_options import check_backend, check_metrics
from hcp_cam.transforms.dwi_io import read_dwi, resolve_gradient_paths

if TYPE_CHECKING:
    import torch

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


def _resolve_device(device: str | torch.device | None) -> torch.device:
    from hcp_cam.transforms.tensor_maps import resolve_device  # torch: imported here, not at start-up

    return resolve_device(device)


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
        out: the FA file (``.nii``/``.nii.gz``); other metrics go to ``<out stem>_<metric>.nii.gz``.
        backend: "torch" or "dipy" (see :func:`~hcp_cam.transforms.tensor_maps.fit_dti_maps`).
        device: torch device; None picks CUDA when available.
        metrics: maps to write; FA is always written.

    Returns:
        metric -> written path. FA ``(X, Y, Z)`` float32; MD/AD/RD in mm^2/s; V1 and colour FA
        ``(X, Y, Z, 3)``; all with the affine, sform/qform codes and voxel sizes of ``dwi``.

    Raises:
        InputError: an output that cannot be written or is one of the inputs (checked first), or
            any bad input (see :func:`~hcp_cam.transforms.dwi_io.read_dwi` and
            :func:`~hcp_cam.transforms.tensor_maps.fit_dti_maps`); nothing is written.
        ConfigError: unknown metric, backend or device.
    """
    metrics = check_metrics(tuple(dict.fromkeys(("fa", *metrics))))
    check_backend(backend)  # bad options and outputs fail before any input is read
    check_output_path(out, "FA output")
    paths = metric_paths(out, metrics)
    for metric, path in paths.items():
        check_output_path(path, f"{metric.upper()} output")
    if not Path(dwi).exists():
        raise InputError("file not found", dwi)
    bvals_p, bvecs_p = resolve_gradient_paths(dwi, bvals, bvecs)
    inputs = {"DWI": dwi, "mask": mask, "b-values file": bvals_p, "b-vectors file": bvecs_p}
    check_not_inputs(list(paths.values()), inputs)

    _fast_gzip_open()  # the decoder's module imported here, not in the worker
    pool = ThreadPoolExecutor(1, thread_name_prefix="read-dwi")
    try:
        reading = pool.submit(read_dwi, dwi, bvals_p, bvecs_p, mask)
        import torch

        from hcp_cam.transforms.tensor_maps import fit_dti_maps

        dev = _resolve_device(device)
        vol = reading.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    gtab = vol.gradients
    maps = fit_dti_maps(
        torch.from_numpy(vol.data).permute(3, 0, 1, 2),
        gtab.bvals,
        gtab.bvecs,
        gtab.b0_mask,
        mask=None if vol.mask_path is None else torch.from_numpy(vol.mask),
        metrics=metrics,
        backend=backend,
        device=dev,
        b0_threshold=gtab.b0_threshold,
        name=dwi,
    )
    del vol
    # the header only (lazy): geometry, sform/qform codes and zooms are copied from it
    reference = nib.load(str(dwi))
    images = {}
    for metric, path in paths.items():
        arr = maps.pop(metric).numpy()  # (C, X, Y, Z)
        data = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 3, 0)
        images[metric] = nifti_like(data, reference, _DESCRIPTIONS[metric], where=path)
    try:
        with atomic_paths(list(paths.values())) as tmps:  # all the maps, or none of them
            for img, tmp in zip(images.values(), tmps, strict=True):
                nib.save(img, str(tmp))
    except OSError as e:  # a full disk, a folder removed meanwhile: nothing was left behind
        raise InputError(f"cannot write the maps ({e.strerror or e}); none was written", out) from e
    return paths


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
    jobs with ``i = 0 .. n-1`` split the dataset without overlap. A cache entry is reused only
    when :func:`hcp_cam.fa_cache.cache_entry_problem` finds nothing wrong with it (it loads, lies
    on the source's grid, its stamp matches the source files); otherwise it is computed again.
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
    check_backend(backend)
    dev = _resolve_device(device)  # bad options fail before the first fit
    _, found = find_acquisitions(dataset_dir, layout, index_dir=index_dir)
    acquisitions = sorted(found, key=lambda a: (a.subject, a.acquisition))
    mine = acquisitions[i::n]
    paths: list[Path] = []
    computed = 0
    for acq in tqdm(mine, desc=f"FA {i}/{n}", unit="acq", disable=not progress):
        path, _, how = acquisition_maps(acq, out_dir, backend=backend, device=dev)
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
