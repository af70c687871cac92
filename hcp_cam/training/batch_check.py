"""Refuse a training run that would run no batch, before it starts.

With ``drop_last`` a training set smaller than one batch gives an empty loader: MONAI's trainer
then warns "dataloader is empty", skips the run and the bundle exits 0 with no checkpoint (3D
training on a small cohort: 6 volumes, ``batch_size`` 32). The partial batch is *not* kept instead:
``batch_size`` and ``drop_last`` are the run's recorded settings, and a run that silently trains on
batches of another size is not the run that was asked for. The error says how many samples there
are and which ``batch_size`` works.
"""

from __future__ import annotations

from typing import Any

from hcp_cam.errors import ConfigError

__all__ = ["count_samples", "check_batches"]


def count_samples(loader: Any) -> int:
    """Samples one epoch of ``loader`` draws on this rank: its sampler's length (a
    ``DistributedSampler`` gives this rank's share), a ``num_samples`` attribute
    (:class:`~hcp_cam.training.device_pipeline.DeviceBatchLoader`), else its dataset's length."""
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "__len__"):
        return len(sampler)
    if hasattr(loader, "num_samples"):
        return int(loader.num_samples)
    return len(loader.dataset)


def check_batches(loader: Any, split: str = "training", epochs: Any = None, spatial_dims: int = 2) -> Any:
    """Refuse a loader that yields no batch, and a number of epochs that trains nothing.

    Args:
        loader: a ``torch.utils.data.DataLoader`` (MONAI's) or a
            :class:`~hcp_cam.training.device_pipeline.DeviceBatchLoader`; it must have ``len``.
        split: the split's name, for the message.
        epochs: the run's ``epochs`` (``max_epochs``); ``None`` skips that check.
        spatial_dims: 2 (the samples are slices) or 3 (volumes), for the message.

    Returns:
        ``loader``, unchanged.

    Raises:
        ConfigError: ``epochs`` is not a whole number >= 1; the split has no sample; or its
            samples make no batch of ``batch_size`` (with ``drop_last``): the message gives the
            number of samples and the largest ``batch_size`` that works.
    """
    if epochs is not None:
        whole = isinstance(epochs, int) and not isinstance(epochs, bool)
        if not whole or epochs < 1:
            raise ConfigError(
                f"epochs must be a whole number >= 1, got {epochs!r}: a run of no epoch trains nothing and "
                "writes no checkpoint"
            )
    unit = "volume(s)" if int(spatial_dims) == 3 else "slice(s)"
    n = count_samples(loader)
    batch_size = getattr(loader, "batch_size", None)
    if n == 0:
        raise ConfigError(
            f"the {split} split has no sample: nothing to train on; check the datalist and fractions"
        )
    if len(loader) == 0:
        distributed = "Distributed" in type(getattr(loader, "sampler", None)).__name__
        raise ConfigError(
            f"the {split} split's {n} {unit}{' on this rank' if distributed else ''} make no batch of "
            f"batch_size {batch_size} (drop_last drops the last partial batch, so the run would train "
            f"nothing and write no checkpoint): use --batch_size {n} or less"
        )
    return loader
