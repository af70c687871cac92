"""The data-randomisation test of Adebayo et al. (NeurIPS 2018) for a run's CAM volumes.

The same configuration trained on labels permuted across subjects (``--label_permutation_seed``,
:func:`hcp_cam.data.permutation.permute_labels`) has nothing real to learn; if its maps of the
test subjects still rank voxels like the real network's, the maps show the input's structure (the
brain's outline, its white matter) rather than what the real network learned. Both runs share the
split (same ``seed``, ``fold``, ``num_folds``), so their maps of a test subject lie on the subject's
FA grid and are compared there (:func:`~hcp_cam.cam.repeatability.map_agreement`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from hcp_cam.cam.repeatability import TOP_FRACTION, pairwise_agreement, run_cam_maps
from hcp_cam.errors import InputError
from hcp_cam.io import write_json_atomic

__all__ = ["DATA_RANDOMISATION_PASS", "data_randomisation_check"]

logger = logging.getLogger(__name__)

#: mean Spearman correlation below which the real maps are taken to differ from the permuted run's
DATA_RANDOMISATION_PASS = 0.5


def _datalist(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "datalist.json"
    if not path.is_file():
        raise InputError("no datalist.json: not a bundle run folder", path)
    return json.loads(path.read_text())


def data_randomisation_check(
    run_dir: str | os.PathLike,
    permuted_run: str | os.PathLike | None,
    out_json: str | os.PathLike | None = None,
    split: str = "test",
) -> dict[str, Any] | None:
    """Compare a run's CAMs of its ``split`` subjects with those of its label-permuted twin.

    Args:
        run_dir: the real run (its ``cam/`` written by the inference).
        permuted_run: the same configuration trained with ``label_permutation_seed`` and mapped by
            its own inference; ``None`` does nothing (the bundle's ``data_randomisation_run`` unset).
        out_json: where to write; default ``<run_dir>/cam/data_randomisation.json``.
        split: whose maps are compared (the test subjects: both runs hold them out).

    Returns:
        what is written: ``spearman`` and ``dice_top10`` (``mean``, ``median``, ``min``, ``max`` over
        acquisitions), ``per_acquisition``, ``passed`` (mean Spearman < :data:`DATA_RANDOMISATION_PASS`),
        ``interpretation``, the permuted run's ``label_permutation`` record and its test metrics.

    Raises:
        InputError: a folder is not a run, the runs split the subjects differently, or a map is missing.
    """
    if permuted_run is None or str(permuted_run).strip().lower() in ("", "null", "none"):
        return None
    run, perm = Path(run_dir), Path(permuted_run)
    real_list, perm_list = _datalist(run), _datalist(perm)
    if "label_permutation" not in perm_list:
        logger.warning("%s: its labels were not permuted (no label_permutation in datalist.json)", perm)
    subjects = sorted({str(e["subject"]) for e in real_list.get(split, [])})
    if subjects != sorted({str(e["subject"]) for e in perm_list.get(split, [])}):
        raise InputError(
            f"the {split} subjects differ from those of {run}: train the permuted run with the same seed, "
            "fold and num_folds",
            perm / "datalist.json",
        )
    real_maps, perm_maps = run_cam_maps(run, [split]), run_cam_maps(perm, [split])
    missing = sorted(set(real_maps) - set(perm_maps))
    if missing:
        s, a = missing[0]
        raise InputError(
            f"no CAM of {len(missing)} {split} acquisition(s): run the inference of the permuted run first",
            perm / "cam" / s / f"{a}_cam.nii.gz",
        )
    if not real_maps:
        raise InputError(
            f"no CAM of the {split} subjects: run the inference first", run / "cam" / "summary.csv"
        )
    table = pairwise_agreement({"real": real_maps, "permuted": perm_maps}, fraction=TOP_FRACTION)
    if len(table) < len(real_maps):
        raise InputError("the permuted run's maps lie on other grids than the real run's", perm / "cam")
    rho = table["spearman"].to_numpy(dtype=float)
    dice = table["dice_top"].to_numpy(dtype=float)
    mean_rho = float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")
    passed = bool(np.isfinite(mean_rho) and mean_rho < DATA_RANDOMISATION_PASS)
    if passed:
        text = (
            f"low correlation (mean {mean_rho:.2f}): the maps of a network trained on permuted labels differ "
            "from the real ones, as they should if the maps show what was learned from the labels"
        )
    else:
        text = (
            f"high correlation (mean {mean_rho:.2f}): a network trained on permuted labels gives similar maps; "
            "they may show the input's structure rather than what the labels taught"
        )
    metrics_path = perm / "metrics" / "test_metrics.json"
    perm_metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    result = {
        "run": str(run),
        "permuted_run": str(perm),
        "label_permutation": perm_list.get("label_permutation"),
        "split": split,
        "n_acquisitions": len(table),
        "spearman": _stats(rho),
        "dice_top10": _stats(dice),
        "dice_top10_chance": TOP_FRACTION,
        "passed": passed,
        "threshold": DATA_RANDOMISATION_PASS,
        "interpretation": text,
        "permuted_test_metrics": None
        if perm_metrics is None
        else {
            k: perm_metrics.get(k)
            for k in ("subject_accuracy", "roc_auc", "slice_accuracy", "majority_baseline")
        },
        "per_acquisition": [
            {
                "subject": r.subject,
                "acquisition": r.acquisition,
                "spearman": _num(r.spearman),
                "dice_top10": r.dice_top,
            }
            for r in table.itertuples()
        ],
        "reference": "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018 (data randomisation)",
    }
    write_json_atomic(result, out_json or run / "cam" / "data_randomisation.json")
    logger.info("data randomisation: mean Spearman %.3f over %d acquisitions", mean_rho, len(table))
    return result


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None  # NaN is not JSON


def _stats(v: np.ndarray) -> dict[str, float | None]:
    f = v[np.isfinite(v)]
    if not f.size:
        return {"mean": None, "median": None, "min": None, "max": None}
    return {
        "mean": float(f.mean()),
        "median": float(np.median(f)),
        "min": float(f.min()),
        "max": float(f.max()),
    }
