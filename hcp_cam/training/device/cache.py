"""The slice cache of the device pipeline: every slice of a split after the deterministic transforms,
as one tensor on the device."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.data import MetaTensor

from hcp_cam.errors import ConfigError

__all__ = ["SliceCache"]

logger = logging.getLogger(__name__)


def _plain(x: Any) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.as_tensor() if isinstance(t, MetaTensor) else t


@dataclass
class SliceCache:
    """All slices of one split, after the deterministic transforms, held on one device.

    Attributes:
        images: ``(N, C, S, S)`` float tensor (the eval chain's output; 0 outside the brain).
        labels: ``(N,)`` int64 class indices (float32 regression targets), on the same device.
        subjects, acquisitions: ``N`` ids per slice (host lists; the subject-level metrics need them).
        axes, indices: ``(N,)`` int64 on the CPU: the slicing axis and the slice index in the volume.
    """

    images: torch.Tensor
    labels: torch.Tensor
    subjects: list[str]
    acquisitions: list[str]
    axes: torch.Tensor
    indices: torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        lengths = {
            len(self.labels),
            len(self.subjects),
            len(self.acquisitions),
            len(self.axes),
            len(self.indices),
        }
        if lengths != {n}:
            raise ValueError(f"{n} images but per-slice fields of lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    @classmethod
    def from_items(
        cls,
        items: Sequence[Mapping[str, Any]],
        transform: Callable[[dict], Mapping[str, Any]],
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        image_key: str = "image",
    ) -> SliceCache:
        """Run ``transform`` (the deterministic eval chain) on every item and stack the results.

        Args:
            items: slice dicts as :meth:`hcp_cam.training.data.PreparedData.items` makes them
                (``image`` ``(1, H, W)``, ``label``, ``subject``, ``acquisition``, ``axis``, ``index``).
            transform: maps one item to one item whose ``image`` is ``(C, S, S)`` (the same ``S`` for
                all), e.g. the eval chain of :func:`hcp_cam.training.data.build_transforms`.
            device: where the cache lives; the stacked tensor is copied there once.
            dtype: of the cached images.
            image_key: key of the image in the items.

        Returns:
            the cache, ``images`` ``(N, C, S, S)`` on ``device``.

        Raises:
            ConfigError: no items, an item without ``label``, or transformed images of different shapes.
        """
        if len(items) == 0:
            raise ConfigError("the split has no slices to cache: check the datalist and slices_per_axis")
        images: list[torch.Tensor] = []
        labels: list[int | float] = []
        subjects: list[str] = []
        acquisitions: list[str] = []
        axes: list[int] = []
        indices: list[int] = []
        for k, item in enumerate(items):
            if "label" not in item:
                raise ConfigError(f"slice item {k} (subject {item.get('subject', '?')!r}) has no 'label'")
            out = transform(dict(item))
            img = _plain(out[image_key]).to(dtype)
            if images and img.shape != images[0].shape:
                raise ConfigError(
                    f"slice item {k} (subject {item.get('subject', '?')!r}) transforms to shape "
                    f"{tuple(img.shape)}, the first to {tuple(images[0].shape)}: the transform must give one size"
                )
            images.append(img)
            # a class index, or a regression target (float: hcp_cam.training.tasks)
            labels.append(item["label"] if isinstance(item["label"], float) else int(item["label"]))
            subjects.append(str(item.get("subject", "")))
            acquisitions.append(str(item.get("acquisition", "")))
            axes.append(int(item.get("axis", -1)))
            indices.append(int(item.get("index", -1)))
        dev = torch.device(device)
        cache = cls(
            images=torch.stack(images).to(dev),
            labels=torch.as_tensor(
                labels, dtype=torch.float32 if isinstance(labels[0], float) else torch.long
            ).to(dev),
            subjects=subjects,
            acquisitions=acquisitions,
            axes=torch.as_tensor(axes, dtype=torch.long),
            indices=torch.as_tensor(indices, dtype=torch.long),
        )
        logger.info(
            "slice cache: %d slices of %s on %s (%.1f MiB)",
            len(cache),
            tuple(cache.images.shape[1:]),
            dev,
            cache.images.numel() * cache.images.element_size() / 2**20,
        )
        return cache
