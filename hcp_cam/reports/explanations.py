"""Tables of how trustworthy the maps are across runs: faithfulness per network and map, repeatability.

``hcp-cam compare`` writes them beside the network comparison (:mod:`hcp_cam.reports.compare`)
when the runs hold what they need:

- :func:`faithfulness_table`: from each run's ``cam/faithfulness.csv`` (the bundle's inference with
  ``cam_faithfulness``), one row per network and map: deletion and insertion areas (mean over the
  test subjects of the group the map is for, then mean ± SD over folds) and the share of those
  subjects whose deletion area is below the random map's;
- :func:`repeatability_table`: from each run's CAM volumes (``cam/<subject>/<acq>_cam.nii.gz``),
  the agreement of a subject's maps between runs of one network (folds, seeds) and between networks
  (runs of the same fold and seed), as top-10% Dice and Spearman correlation
  (:func:`hcp_cam.cam.repeatability.pairwise_agreement`). Folds hold out different subjects, so
  maps of the same subject from several folds need ``--cam_split all`` in the inference.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hcp_cam.cam.repeatability import TOP_FRACTION, pairwise_agreement, run_cam_maps
from hcp_cam.io import atomic_path
from hcp_cam.reports.compare import read_run

__all__ = [
    "mapped_group",
    "faithfulness_by_map",
    "faithfulness_table",
    "repeatability_table",
    "format_table_markdown",
    "write_table",
]

_MAP_ORDER = ("cam", "gradcam", "gradcampp", "random", "fa")


def _run_ids(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    runs = [read_run(d) for d in run_dirs]
    return pd.DataFrame([{k: r[k] for k in ("run_dir", "arch", "fold", "seed")} for r in runs])


def mapped_group(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ``faithfulness.csv`` table whose subject belongs to the group the map is for
    (``group == class``; the map "old minus young" is for the old)."""
    mapped = table["class"].astype(str).str.split(" minus ").str[0]
    return table[table["group"].astype(str) == mapped]


def _below_random(wide: pd.DataFrame, name: str) -> str:
    """``"k/n"``: of the ``n`` acquisitions with both maps, those whose ``name`` deletion area is below the random map's."""
    if "random" not in wide or name not in wide or name == "random":
        return ""
    pair = wide[[name, "random"]].dropna()
    return f"{int((pair[name] < pair['random']).sum())}/{len(pair)}"


def faithfulness_by_map(table: pd.DataFrame) -> pd.DataFrame:
    """One run's ``faithfulness.csv`` summarised per map over the acquisitions of the mapped group.

    Returns:
        columns ``map``, ``n_acquisitions``, ``deletion_auc``, ``insertion_auc`` (means) and
        ``below_random`` (``"k/n"``, empty for the random map itself), maps in :data:`MAPS` order.
    """
    t = mapped_group(table)
    wide = t.pivot_table(index=["subject", "acquisition"], columns="map", values="deletion_auc")
    names = [m for m in _MAP_ORDER if m in set(t["map"])] + sorted(set(t["map"]) - set(_MAP_ORDER))
    rows = []
    for name in names:
        sub = t[t["map"] == name]
        rows.append(
            {
                "map": name,
                "n_acquisitions": len(sub),
                "deletion_auc": float(sub["deletion_auc"].mean()),
                "insertion_auc": float(sub["insertion_auc"].mean()),
                "below_random": _below_random(wide, name),
            }
        )
    return pd.DataFrame(
        rows, columns=["map", "n_acquisitions", "deletion_auc", "insertion_auc", "below_random"]
    )


def faithfulness_table(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per network and map, from the runs' ``cam/faithfulness.csv``.

    Only the subjects of the group the map is for (``group == class``, e.g. the old subjects for
    the map of "old") are averaged: for the other group the mapped class is already improbable.

    Returns:
        columns ``arch``, ``map``, ``n_folds``, ``n_subjects``, ``deletion_auc_mean``/``_std``,
        ``insertion_auc_mean``/``_std`` (over folds, of the per-fold means) and ``below_random``
        (subjects whose deletion area is below the random map's, ``"k/n"``, pooled over folds);
        empty when no run has the file.
    """
    rows = []
    for run in _run_ids(run_dirs).itertuples():
        path = Path(run.run_dir) / "cam" / "faithfulness.csv"
        if not path.is_file():
            continue
        t = mapped_group(pd.read_csv(path, dtype={"subject": str, "acquisition": str}))
        t = t.assign(arch=run.arch, run_dir=run.run_dir)
        rows.append(t)
    if not rows:
        return pd.DataFrame()
    table = pd.concat(rows, ignore_index=True)
    wide = table.pivot_table(
        index=["arch", "run_dir", "subject", "acquisition"], columns="map", values="deletion_auc"
    )
    out = []
    for arch, runs in table.groupby("arch", sort=False):
        maps = [m for m in _MAP_ORDER if m in set(runs["map"])] + sorted(set(runs["map"]) - set(_MAP_ORDER))
        for name in maps:
            sub = runs[runs["map"] == name]
            per_fold = sub.groupby("run_dir")[["deletion_auc", "insertion_auc"]].mean()
            row = {"arch": arch, "map": name, "n_folds": len(per_fold), "n_subjects": len(sub)}
            for col in ("deletion_auc", "insertion_auc"):
                row[f"{col}_mean"] = float(per_fold[col].mean())
                row[f"{col}_std"] = float(per_fold[col].std(ddof=1)) if len(per_fold) > 1 else math.nan
            row["below_random"] = _below_random(wide.loc[arch], name)
            out.append(row)
    return pd.DataFrame(out)


def repeatability_table(
    run_dirs: Sequence[str | os.PathLike], fraction: float = TOP_FRACTION
) -> pd.DataFrame:
    """Agreement of each subject's CAMs between runs: within a network and between networks.

    Within a network: every pair of its runs (folds or seeds). Between networks: runs of two
    networks with the same fold and seed. Maps are compared where both runs wrote one (every
    split: with ``--cam_split all`` each fold's network maps every subject).

    Returns:
        columns ``comparison`` (``"within"``/``"between"``), ``arch_a``, ``arch_b``, ``n_run_pairs``,
        ``n_maps`` (map pairs), ``dice_top_mean``/``_std`` and ``spearman_mean``/``_std`` (over map
        pairs); empty when fewer than two runs have maps of a common subject.
    """
    ids = _run_ids(run_dirs)
    maps = {r.run_dir: run_cam_maps(r.run_dir) for r in ids.itertuples()}
    ids = ids[[bool(maps[d]) for d in ids["run_dir"]]]
    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for a, b in itertools.combinations(ids.itertuples(), 2):
        if a.arch == b.arch:
            groups.setdefault(("within", a.arch, a.arch), []).append((a.run_dir, b.run_dir))
        elif str(a.fold) == str(b.fold) and str(a.seed) == str(b.seed):
            x, y = sorted((a, b), key=lambda r: r.arch)
            groups.setdefault(("between", x.arch, y.arch), []).append((x.run_dir, y.run_dir))
    rows = []
    for (kind, arch_a, arch_b), pairs in groups.items():
        agree = pairwise_agreement(maps, pairs=pairs, fraction=fraction)
        if not len(agree):
            continue
        row = {
            "comparison": kind,
            "arch_a": arch_a,
            "arch_b": arch_b,
            "n_run_pairs": len(pairs),
            "n_maps": len(agree),
        }
        for col in ("dice_top", "spearman"):
            v = agree[col].to_numpy(dtype=float)
            row[f"{col}_mean"] = float(np.nanmean(v))
            row[f"{col}_std"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, std: float, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if not math.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table_markdown(table: pd.DataFrame, kind: str) -> str:
    """A faithfulness (``kind="faithfulness"``) or repeatability table as Markdown."""
    if kind == "faithfulness":
        head = [
            "Network",
            "Map",
            "Deletion AUC (lower: faithful)",
            "Insertion AUC (higher)",
            "Deletion below random",
            "Folds",
        ]
        body = [
            [r.arch, r.map, _cell(r.deletion_auc_mean, r.deletion_auc_std), _cell(r.insertion_auc_mean, r.insertion_auc_std),
             r.below_random or "-", str(r.n_folds)]
            for r in table.itertuples()
        ]  # fmt: skip
    else:
        head = ["Comparison", "Networks", "Top-10% Dice", "Spearman", "Map pairs"]
        body = [
            [r.comparison, r.arch_a if r.arch_a == r.arch_b else f"{r.arch_a} vs {r.arch_b}",
             _cell(r.dice_top_mean, r.dice_top_std), _cell(r.spearman_mean, r.spearman_std), str(r.n_maps)]
            for r in table.itertuples()
        ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, prefix: str | os.PathLike, kind: str) -> list[Path]:
    """Write ``PREFIX.csv`` and ``PREFIX.md`` atomically; return the paths."""
    paths = [Path(f"{os.fspath(prefix)}.csv"), Path(f"{os.fspath(prefix)}.md")]
    with atomic_path(paths[0]) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(format_table_markdown(table, kind), encoding="utf-8")
    return paths
