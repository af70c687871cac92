"""Report sections on how far the maps can be trusted: faithfulness, data randomisation, repeatability.

- :func:`faithfulness_section`: the run page's section, from ``cam/faithfulness.csv`` (deletion and
  insertion areas per map, :func:`~hcp_cam.reports.explanations.faithfulness_by_map`), its figure
  ``cam/faithfulness.png`` and ``cam/data_randomisation.json``; ``None`` when the run has neither.
- :func:`compare_explanation_sections`: the compare page's faithfulness and repeatability tables
  across runs (:func:`~hcp_cam.reports.explanations.faithfulness_table`,
  :func:`~hcp_cam.reports.explanations.repeatability_table`); none when no run has what they need.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hcp_cam.reports.explanations import faithfulness_by_map, faithfulness_table, repeatability_table
from hcp_cam.reports.html import Section, figure, key_values, table
from hcp_cam.reports.run_folder import read_csv, read_json

__all__ = ["faithfulness_section", "compare_explanation_sections"]

_READING = (
    '<p class="note">Each map ranks the voxels the CAM knows; they are removed (deletion) or restored '
    "(insertion) in that order in steps of 0-100%, by ROAD's noisy linear imputation from their brain "
    "neighbours, and the subject-level probability of the mapped class is recomputed. A faithful map makes "
    "it fall fast (small deletion area) and rise fast (large insertion area); the random map and the FA "
    "itself are the baselines a map must beat. Means over the test subjects of the group the map is for.</p>"
)


def _faithfulness_rows(t: pd.DataFrame) -> list[list[Any]]:
    return [
        [r.map, r.n_acquisitions, r.deletion_auc, r.insertion_auc, r.below_random or "-"]
        for r in t.itertuples()
    ]


def faithfulness_section(run_dir: str | os.PathLike) -> Section | None:
    """The run page's faithfulness and data-randomisation section; ``None`` without either file.

    Raises:
        InputError: a file exists but cannot be read (the message names it).
    """
    cam = Path(run_dir) / "cam"
    faith, check = cam / "faithfulness.csv", cam / "data_randomisation.json"
    if not faith.is_file() and not check.is_file():
        return None
    body = ""
    if faith.is_file():
        raw = read_csv(faith)
        t = faithfulness_by_map(raw)
        classes = raw["class"].astype(str).unique()
        heads = [
            "map",
            "acquisitions",
            "deletion AUC (lower: faithful)",
            "insertion AUC (higher)",
            "deletion below random",
        ]
        caption = f"Map of class {', '.join(classes)}"
        body += _READING + table(heads, _faithfulness_rows(t), caption=caption)
        png = cam / "faithfulness.png"
        if png.is_file():
            body += figure(png, "Mean deletion and insertion curves per map, one row per group")
    if check.is_file():
        r = read_json(check)
        sp, dice = r.get("spearman") or {}, r.get("dice_top10") or {}
        pairs = [
            ("Permuted run", r.get("permuted_run")),
            ("Acquisitions", r.get("n_acquisitions")),
            (
                "Spearman, mean (min to max)",
                f"{_f(sp.get('mean'))} ({_f(sp.get('min'))} to {_f(sp.get('max'))})",
            ),
            ("Top-10% Dice, mean (chance)", f"{_f(dice.get('mean'))} ({_f(r.get('dice_top10_chance'))})"),
            ("Passed", r.get("passed")),
            ("Reading", r.get("interpretation")),
        ]
        body += (
            '<h3>Data randomisation</h3><p class="note">The same configuration trained on labels permuted '
            "across subjects, mapped on the same test subjects (Adebayo et al. 2018).</p>" + key_values(pairs)
        )
    else:  # the heading names it: say that it was not run, and how to run it
        body += (
            '<h3>Data randomisation</h3><p class="note">Not run for this run: it trains a second network on '
            "permuted labels (training with <code>--label_permutation_seed</code>, then this run's inference "
            "with <code>--data_randomisation_run</code>; <code>docs/make_explanations.sh</code>).</p>"
        )
    return Section("faithfulness", "Faithfulness and data randomisation", body)


def _f(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{v:.3f}"


def compare_explanation_sections(run_dirs: Sequence[str | os.PathLike]) -> list[Section]:
    """The compare page's faithfulness and repeatability sections (each only when its table has rows)."""
    out = []
    faith = faithfulness_table(run_dirs)
    if len(faith):
        rows = [
            [r.arch, r.map, _mean_std(r.deletion_auc_mean, r.deletion_auc_std),
             _mean_std(r.insertion_auc_mean, r.insertion_auc_std), r.below_random or "-", r.n_folds, r.n_subjects]
            for r in faith.itertuples()
        ]  # fmt: skip
        heads = [
            "network",
            "map",
            "deletion AUC",
            "insertion AUC",
            "deletion below random",
            "folds",
            "subjects",
        ]
        body = _READING + table(heads, rows, caption="Mean ± sample std over folds of the per-fold means")
        out.append(Section("faithfulness", "Faithfulness of the maps", body))
    rep = repeatability_table(run_dirs)
    if len(rep):
        rows = [
            [r.comparison, r.arch_a if r.arch_a == r.arch_b else f"{r.arch_a} vs {r.arch_b}",
             _mean_std(r.dice_top_mean, r.dice_top_std), _mean_std(r.spearman_mean, r.spearman_std),
             r.n_run_pairs, r.n_maps]
            for r in rep.itertuples()
        ]  # fmt: skip
        heads = ["comparison", "networks", "top-10% Dice", "Spearman", "run pairs", "map pairs"]
        body = (
            '<p class="note">Each subject\'s CAMs compared between runs of one network (folds, seeds: "within") '
            'and between networks of the same fold and seed ("between"), on the subject\'s FA grid: overlap of '
            "the top 10% of voxels (0.1 by chance) and rank correlation. Folds hold out different subjects: "
            "map every subject (<code>--cam_split all</code>) to compare them across folds.</p>"
        ) + table(heads, rows, caption="Mean ± sample std over map pairs")
        out.append(Section("repeatability", "Repeatability of the maps", body))
    return out


def _mean_std(mean: float, std: float) -> str:
    if mean != mean:  # NaN
        return "n/a"
    return f"{mean:.3f}" if std != std else f"{mean:.3f} ± {std:.3f}"
