"""Batches of the slice cache for MONAI's engines: per-epoch shuffling, DDP shards, augmentation, and
the pieces the bundle wires around it (the epoch handler, the choice of loader)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from torch.utils.data import DataLoader

from hcp_cam.errors import ConfigError
from hcp_cam.training.device.cache import SliceCache

__all__ = ["DeviceBatchLoader", "SetEpochHandler", "select_loader", "epoch_seed"]


def epoch_seed(*values: int) -> int:
    """A 63-bit seed mixed from integers (seed, epoch, rank, ...) by NumPy's ``SeedSequence``."""
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


class DeviceBatchLoader:
    """Batches of a :class:`SliceCache`, shuffled per epoch and sharded across DDP ranks, on its device.

    Iterating yields dicts ``{"image": (B, C, S, S), "label": (B,), "subject": [str] * B,
    "acquisition": [str] * B, "axis": (B,), "index": (B,)}`` (image and label on the cache's device;
    the ids on the host, for the subject-level metrics), which MONAI's engines take with their default
    ``prepare_batch``. ``augment`` runs on each gathered batch.

    The order of an epoch depends on ``seed`` and the epoch only (as ``DistributedSampler``, call
    :meth:`set_epoch`, or attach a :class:`SetEpochHandler`); the augmentation generator is reseeded
    from ``(seed, epoch, rank)`` at each epoch, so a resumed run sees the batches and augmentations of
    an uninterrupted one. With several ranks, each takes every ``world_size``-th index of the
    shuffled order (after padding the order with its first indices to a multiple of ``world_size``
    when ``even_divisible``): the ranks' slices are disjoint, as with MONAI's ``DistributedSampler``.

    Args:
        cache: the slices.
        batch_size: slices per batch.
        shuffle: a new random order each epoch (else the cache's order).
        drop_last: drop the last, smaller batch of a rank.
        augment: a callable on ``(B, C, S, S)`` batches taking ``generator=`` (:class:`RandSliceAugment`);
            ``None`` for none.
        seed: of the order and of the augmentation.
        rank, world_size: this process's shard; ``None`` takes them from ``torch.distributed`` when it
            is initialised (else 0 and 1). Pass ``world_size=1`` to give every rank all slices (validation).
        even_divisible: pad the order so every rank gets as many slices (else the first ranks get one more).
        channels_last: yield images in ``torch.channels_last`` memory format.

    Raises:
        ConfigError: ``batch_size`` < 1, ``rank`` outside ``[0, world_size)``, or no batch at all for this rank.
    """

    def __init__(
        self,
        cache: SliceCache,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Callable[..., torch.Tensor] | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        even_divisible: bool = True,
        channels_last: bool = False,
    ) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        dist = torch.distributed
        initialised = dist.is_available() and dist.is_initialized()
        self.world_size = (
            int(world_size) if world_size is not None else (dist.get_world_size() if initialised else 1)
        )
        if rank is not None:
            self.rank = int(rank)
        else:
            self.rank = dist.get_rank() if initialised and self.world_size > 1 else 0
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {self.rank} is outside [0, {self.world_size})")
        self.cache = cache
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self.seed = int(seed)
        self.even_divisible = bool(even_divisible)
        self.channels_last = bool(channels_last)
        self.epoch = 0
        self._generator: torch.Generator | None = None
        if len(self) == 0:
            raise ConfigError(
                f"{self.num_samples} slices on rank {self.rank} make no batch of {self.batch_size}"
                f"{' (drop_last)' if self.drop_last else ''}: lower batch_size or use more slices"
            )

    @property
    def num_samples(self) -> int:
        """Slices this rank sees per epoch."""
        n, ws = len(self.cache), self.world_size
        if self.even_divisible:
            return math.ceil(n / ws)
        return len(range(self.rank, n, ws))

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's indices into the cache for ``epoch`` (default the current one), int64 on the CPU."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = len(self.cache)
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.even_divisible and self.world_size > 1:
            total = self.num_samples * self.world_size
            order = torch.cat([order, order[: total - n]]) if total > n else order
        return order[self.rank :: self.world_size]

    def _augment_generator(self, epoch: int) -> torch.Generator:
        device = self.cache.device
        if self._generator is None:
            self._generator = torch.Generator(device=device)
        self._generator.manual_seed(epoch_seed(self.seed, epoch, self.rank, 1))
        return self._generator

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # a generator: the order is fixed when the first batch is asked for, i.e. after the
        # engine's EPOCH_STARTED handlers (SetEpochHandler) ran, as DataLoader + DistributedSampler
        epoch = self.epoch
        order = self.indices(epoch)
        order_dev = order.to(self.cache.device)
        g = self._augment_generator(epoch) if self.augment is not None else None
        c = self.cache
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, len(order))
            idx, idx_host = order_dev[lo:hi], order[lo:hi]
            image = c.images.index_select(0, idx)
            if self.augment is not None:
                image = self.augment(image, generator=g)
            if self.channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            host = idx_host.tolist()
            yield {
                "image": image,
                "label": c.labels.index_select(0, idx),
                "subject": [c.subjects[i] for i in host],
                "acquisition": [c.acquisitions[i] for i in host],
                "axis": c.axes[idx_host],
                "index": c.indices[idx_host],
            }


class SetEpochHandler:
    """Calls ``loader.set_epoch(engine.state.epoch)`` when each epoch starts (a no-op for loaders
    without ``set_epoch``, such as MONAI's ``DataLoader``, whose ``DistributedSampler`` the engine
    already handles). Attach it to the trainer of a :class:`DeviceBatchLoader`.

    Args:
        loader: the trainer's data loader.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def attach(self, engine: Engine) -> None:
        if hasattr(self.loader, "set_epoch") and not isinstance(self.loader, DataLoader):
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        self.loader.set_epoch(engine.state.epoch)


def select_loader(pipeline: str, **loaders: Any) -> Any:
    """The loader of the chosen pipeline among ``loaders`` (the bundle disables the others).

    Raises:
        ConfigError: ``pipeline`` is not one of the names, or its loader was not built.
    """
    if pipeline not in loaders:
        raise ConfigError(f"data_pipeline {pipeline!r}: expected one of {sorted(loaders)}")
    loader = loaders[pipeline]
    if loader is None:
        raise ConfigError(f"the {pipeline!r} data loader is disabled in the config")
    return loader
