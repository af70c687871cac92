"""The bundle's ``group_analysis`` step: off unless asked for, then :func:`run_group_analysis`.

``configs/inference.json`` checks the ``group_*`` keys in its ``initialize`` (:func:`check_bundle_step`:
before the CAM inference, so a wrong path costs no CAM run) and calls :func:`bundle_step` after the
CAM inference; the run report that follows shows the group maps (``<output_dir>/group``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.group.analysis import GroupResult, check_inputs, run_group_analysis

__all__ = ["bundle_step", "check_bundle_step"]


def _optional(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in {"", "none", "null"}:
        return None
    return value


def _run_list(run_dirs: Any, run_dir: str | os.PathLike | None) -> list[str | os.PathLike]:
    run_dirs = _optional(run_dirs)
    if run_dirs is None:
        if run_dir is None:
            raise ConfigError("group_runs: give the run folders to analyse (the folds' output_dir)")
        return [run_dir]
    if isinstance(run_dirs, (str, os.PathLike)):
        return [run_dirs]
    if (
        isinstance(run_dirs, Sequence)
        and run_dirs
        and all(isinstance(r, (str, os.PathLike)) for r in run_dirs)
    ):
        return list(run_dirs)
    raise ConfigError(f"group_runs must be a run folder or a list of them, got {run_dirs!r}")


def _out_dir(out_dir: Any, runs: list, run_dir: str | os.PathLike | None) -> Path:
    base = run_dir if run_dir is not None else runs[0]
    return Path(out_dir) if _optional(out_dir) is not None else Path(base) / "group"


def check_bundle_step(
    enabled: Any,
    run_dirs: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    out_dir: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    **options: Any,
) -> bool:
    """Check the ``group_*`` keys before the CAM inference (same arguments as :func:`bundle_step`).

    The other runs of ``group_runs`` must already hold their CAM volumes (a ``datalist.json`` and a
    ``cam/summary.csv``); the template and atlas are read and checked against each other.

    Returns:
        ``True`` (the call stands in the config's ``initialize`` list), whether or not it is enabled.

    Raises:
        ConfigError, InputError: one line naming the key or file.
    """
    from hcp_cam.training.run_setup import flag

    if not flag(enabled, "group_analysis"):
        return True
    runs = _run_list(run_dirs, run_dir)
    options = {k: _optional(v) for k, v in options.items()}
    if (options.get("atlas") is None) != (options.get("atlas_labels") is None):
        raise ConfigError("group_atlas and group_atlas_labels go together (the label image and its table)")
    if options.get("atlas") is not None and options.get("template") is None:
        raise ConfigError("group_atlas needs group_template: the atlas must be in the template's space")
    this = Path(run_dir).resolve() if run_dir is not None else None
    for run in runs:
        p = Path(run)
        if p.resolve() == this:
            continue  # its CAM volumes are what this inference writes
        if not (p / "datalist.json").is_file() or not (p / "cam" / "summary.csv").is_file():
            raise InputError(
                "group_runs: not a run folder with CAM volumes (datalist.json and cam/summary.csv expected; "
                "run each fold's inference first)",
                p,
            )
    known = set(inspect.signature(check_inputs).parameters)
    check_inputs(_out_dir(out_dir, runs, run_dir), **{k: v for k, v in options.items() if k in known})
    return True


def bundle_step(
    enabled: Any,
    run_dirs: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    out_dir: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    **options: Any,
) -> GroupResult | None:
    """Run the group analysis from a bundle config when ``enabled`` (``true``/``false`` as the command
    line passes it); ``None`` otherwise, without reading anything.

    Args:
        enabled: the ``group_analysis`` key.
        run_dirs: the ``group_runs`` key: one run folder or a list (the k folds of a cross-validation,
            each subject's maps taken from the fold that held it out); ``None``: ``run_dir`` alone.
        out_dir: the ``group_dir`` key; default ``<run_dir>/group`` (where the run report looks), or
            ``<first run>/group`` without ``run_dir``.
        run_dir: the run being inferred (the bundle's ``run_dir``).
        options: :func:`run_group_analysis` keywords (``template``, ``atlas``, ``atlas_labels``,
            ``permutations``, ``seed``, ``deformable``, ...); ``null``/``"none"`` strings become ``None``.

    Raises:
        ConfigError: ``enabled`` is not a boolean, or ``run_dirs`` is neither a folder nor a list;
            and what :func:`run_group_analysis` raises.
    """
    from hcp_cam.training.run_setup import flag

    if not flag(enabled, "group_analysis"):
        return None
    runs = _run_list(run_dirs, run_dir)
    out = _out_dir(out_dir, runs, run_dir)
    return run_group_analysis(runs, out, **{k: _optional(v) for k, v in options.items()})
