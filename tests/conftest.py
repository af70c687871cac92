"""Shared fixtures: small data that the project makes itself, nothing downloaded."""

from __future__ import annotations

import os
import tempfile

import pytest

# matplotlib must not touch the user's config and must not need a display
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="hcp-cam-mpl-"))
# the default cache_dir (FA maps, pybids' index, demo data) is the user's: never a test's
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="hcp-cam-xdg-")


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch to the CI machine's two cores and make runs repeatable."""
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 10-subject synthetic dataset (24x28x24) and an FA cache, made once for the bundle tests."""
    from bundle_helpers import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_dataset"))


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory):
    """One tiny bundle training run (2 epochs), shared by the train, evaluate and inference tests.

    Returns ``(output_dir, CompletedProcess)``; the evaluate/inference tests write into it too.
    """
    from bundle_helpers import CONFIGS, run_bundle

    out = tmp_path_factory.mktemp("trained_run") / "run"
    # absolute config path from a folder outside the repository: the bundle must not need the cwd
    proc = run_bundle("training", CONFIGS / "train.json", out, tiny_data, cwd=out.parent)
    return out, proc


@pytest.fixture(scope="session")
def completed_run(trained_run, tiny_data):
    """The tiny training run after the bundle's ``evaluating`` and ``inference`` (each run only if its
    outputs are not there yet: the bundle tests may have run them on the same folder already)."""
    from bundle_helpers import EVALUATE, INFERENCE, output_of, run_bundle

    out, proc = trained_run
    assert proc.returncode == 0, output_of(proc)[-4000:]
    for run_id, cfg, made in (
        ("evaluating", EVALUATE, "metrics/test_metrics.json"),
        ("inference", INFERENCE, "cam/summary.csv"),
    ):
        if not (out / made).is_file():
            p = run_bundle(run_id, cfg, out, tiny_data)
            assert p.returncode == 0, output_of(p)[-4000:]
    return out


@pytest.fixture(scope="session")
def playwright():
    """Playwright's driver, started once (a second ``sync_playwright()`` in the same process fails)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright):
    """One headless Chromium (Debian's, driven by Playwright) for every page test of the session."""
    from report_helpers import CHROMIUM_ARGS, chromium_path

    b = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()
