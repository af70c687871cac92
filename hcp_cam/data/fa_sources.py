"""Where each acquisition's FA map and brain mask come from: given, cached, or computed once.

- a given FA map (layout ``fa``) is used as it is, with its mask if one is given;
- otherwise FA is fitted once into the cache, ``<fa_dir>/<subject>/<acquisition>_fa.nii.gz``
  (:func:`hcp_cam.fa_maps.compute_fa_file`), inside the dataset's mask, and reused while its entry is
  valid (:func:`hcp_cam.fa_cache.fa_for_acquisition`: stamp of the sources, grid, readable);
- an acquisition without a mask whose layout has none (raw BIDS: ``compute_mask``) first gets
  one from its mean b0, ``<fa_dir>/<subject>/<acquisition>_mask.nii.gz`` beside the FA
  (:func:`hcp_cam.data.brain_mask.compute_brain_mask`), and the FA is fitted inside it.

The mask is written before the FA, so a cached FA was always fitted inside its cached mask.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hcp_cam.data.discovery import Acquisition

__all__ = ["entry_acquisition", "acquisition_maps", "computed_mask_path"]


def entry_acquisition(root: str | os.PathLike, entry: Mapping[str, Any]) -> Acquisition:
    """The :class:`Acquisition` of a datalist entry (paths relative to ``root``, or absolute)."""
    root = Path(root)

    def path(key: str) -> Path | None:
        return root / entry[key] if entry.get(key) else None

    return Acquisition(
        subject=str(entry["subject"]), acquisition=str(entry["acquisition"]), dwi=path("dwi"),
        bvals=path("bvals"), bvecs=path("bvecs"), mask=path("mask"), fa=path("fa"),
        compute_mask=bool(entry.get("compute_mask", False)),
        entities=tuple((str(k), str(v)) for k, v in dict(entry.get("entities") or {}).items()),
    )  # fmt: skip


def computed_mask_path(fa_path: str | os.PathLike, acquisition: str) -> Path:
    """``<acquisition>_mask.nii.gz`` beside ``<acquisition>_fa.nii.gz``."""
    return Path(fa_path).with_name(f"{acquisition}_mask.nii.gz")


def acquisition_maps(
    acq: Acquisition,
    fa_dir: str | os.PathLike,
    backend: str = "torch",
    device: Any = None,
) -> tuple[Path, Path | None, str]:
    """The FA map and brain mask of one acquisition, computing what is neither given nor cached.

    Args:
        acq: the acquisition (:func:`hcp_cam.data.layouts.find_acquisitions`, or :func:`entry_acquisition`).
        fa_dir: the FA cache of its dataset.
        backend, device: the tensor fit's (see :func:`hcp_cam.fa_maps.compute_fa_file`).

    Returns:
        ``(fa, mask, how)``: paths (``mask`` ``None`` where there is none: the brain is then
        FA > 0) and ``"given"``, ``"cached"`` or ``"computed"``.

    Raises:
        InputError: from the mask or the fit (nothing is left under the final names).
    """
    from hcp_cam.data.brain_mask import compute_brain_mask
    from hcp_cam.fa_cache import fa_for_acquisition
    from hcp_cam.fa_maps import compute_fa_file, fa_cache_path

    if acq.fa is not None:
        return acq.fa, acq.mask, "given"
    fa_path = fa_cache_path(fa_dir, acq.subject, acq.acquisition)
    mask = acq.mask
    how = "cached"
    if mask is None and acq.compute_mask:
        mask = computed_mask_path(fa_path, acq.acquisition)
        if not mask.is_file():
            compute_brain_mask(acq.dwi, acq.bvals, mask)
            how = "computed"

    def compute(out: Path) -> None:
        compute_fa_file(acq.dwi, acq.bvals, acq.bvecs, mask, out, backend=backend, device=device)

    # reused only when the entry loads, lies on the DWI's grid and its stamp matches the sources
    fa_path, fresh = fa_for_acquisition(
        fa_dir, acq.subject, acq.acquisition, acq.dwi, acq.bvals, acq.bvecs, mask, compute, backend
    )
    if fresh:
        how = "computed"
    return fa_path, mask, how
