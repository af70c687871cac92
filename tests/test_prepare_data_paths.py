"""The FA paths a run records are absolute, so readers in other folders find them.

They go into ``cam/summary.csv``, which the report and ``hcp-cam group`` read later from wherever
they run: a relative ``--cache_dir`` once made the report's viewer show the CAM without its FA.
"""

from __future__ import annotations

import os
from pathlib import Path

from hcp_cam.training.data import prepare_data


def test_a_relative_cache_dir_gives_absolute_fa_paths(tiny_data, tmp_path, monkeypatch):
    cache = Path(tiny_data.cache_dir)
    monkeypatch.chdir(cache.parent)
    prepared = prepare_data(tiny_data.dataset_dir, tmp_path / "run", Path(cache.name), slices_per_axis=2)
    monkeypatch.chdir(tmp_path)  # a reader elsewhere
    paths = [Path(e["fa"]) for split in prepared.entries.values() for e in split]
    assert paths and all(p.is_absolute() for p in paths), paths[:2]
    assert all(p.is_file() for p in paths)
    assert all(os.path.samefile(p.parents[2], cache / "fa") for p in paths)
