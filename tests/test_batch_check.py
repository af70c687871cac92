"""A training run that would run no batch is refused before it starts (hcp_cam.training.batch_check),
on real torch/MONAI data loaders."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset
from torch.utils.data import DistributedSampler

from hcp_cam.errors import ConfigError
from hcp_cam.training.batch_check import check_batches, count_samples


def _loader(n: int, batch_size: int, drop_last: bool = True, sampler=None) -> DataLoader:
    data = Dataset([{"image": torch.zeros(1, 4, 4, 4), "label": i % 2} for i in range(n)])
    return DataLoader(data, batch_size=batch_size, drop_last=drop_last, sampler=sampler, shuffle=False)


def test_zero_batch_3d_training_is_refused_with_the_sample_count_and_a_batch_size_that_works():
    """6 training volumes, batch_size 32, drop_last: MONAI skipped the run and the bundle exited 0."""
    loader = _loader(6, 32)
    assert len(loader) == 0
    with pytest.raises(ConfigError) as err:
        check_batches(loader, "training", epochs=20, spatial_dims=3)
    assert str(err.value) == (
        "the training split's 6 volume(s) make no batch of batch_size 32 (drop_last drops the last partial "
        "batch, so the run would train nothing and write no checkpoint): use --batch_size 6 or less"
    )
    # the batch size it suggests gives one batch
    assert check_batches(_loader(6, 6), "training", epochs=20, spatial_dims=3) is not None
    assert len(_loader(6, 6)) == 1


def test_a_set_of_exactly_one_batch_and_one_without_drop_last_pass():
    assert check_batches(_loader(32, 32)) is not None
    assert check_batches(_loader(5, 32, drop_last=False)) is not None  # validation keeps the partial batch


def test_per_rank_counts_under_a_distributed_sampler():
    sampler = DistributedSampler(_loader(7, 1).dataset, num_replicas=2, rank=1, shuffle=False)
    loader = _loader(7, 8, sampler=sampler)
    assert count_samples(loader) == 4
    with pytest.raises(ConfigError, match=r"split's 4 slice\(s\) on this rank make no batch of batch_size 8"):
        check_batches(loader)


@pytest.mark.parametrize("epochs", [0, -1, 2.5, "3", True])
def test_epochs_that_train_nothing_are_refused(epochs):
    with pytest.raises(ConfigError, match=f"epochs must be a whole number >= 1, got {epochs!r}"):
        check_batches(_loader(4, 2), epochs=epochs)


def test_an_empty_split_is_refused():
    with pytest.raises(ConfigError, match="the training split has no sample"):
        check_batches(_loader(0, 2, drop_last=False))
