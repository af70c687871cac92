"""The bundle's ``group_analysis`` step: off unless asked for, then :func:`run_group_analysis`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hcp_cam.group.analysis import GroupResult, run_group_analysis

__all__ = ["bundle_step"]


def _optional(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in {"", "none", "null"}:
        return None
    return value


def bundle_step(
    enabled: Any,
    run_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    **options: Any,
) -> GroupResult | None:
    """Run the group analysis from a bundle config when ``enabled`` (``true``/``false`` as the command
    line passes it); ``None`` otherwise.

    Args:
        enabled: the ``group_analysis`` key.
        run_dirs: one run folder or a list (the folds); a string is one folder.
        out_dir: default ``<first run>/group``.
        options: :func:`run_group_analysis` keywords (``template``, ``atlas``, ``atlas_labels``,
            ``permutations``, ``seed``, ...); ``null``/``"none"`` strings become ``None``.
    """
    from hcp_cam.training.run_setup import flag

    if not flag(enabled, "group_analysis"):
        return None
    runs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    out = Path(out_dir) if _optional(out_dir) is not None else Path(runs[0]) / "group"
    return run_group_analysis(runs, out, **{k: _optional(v) for k, v in options.items()})
