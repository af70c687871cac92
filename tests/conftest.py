"""Shared fixtures: small data that the project makes itself, nothing downloaded."""

from __future__ import annotations

import os
import tempfile

import pytest

# matplotlib must not touch the user's config and must not need a display
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="hcp-cam-mpl-"))


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch to the CI machine's two cores and make runs repeatable."""
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.manual_seed(0)
    yield
