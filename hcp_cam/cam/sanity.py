"""Model-randomisation sanity check of CAM volumes (Adebayo et al., NeurIPS 2018).

The CAMs of a trained network and of a copy with re-initialised weights are compared by Spearman
rank correlation; maps that do not change when the weights do cannot explain what was learned.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from hcp_cam.cam.inferer import CAMInferer
from hcp_cam.fa_volume import load_fa_with_mask
from hcp_cam.io import write_json_atomic

__all__ = ["RANDOMISATION_PASS", "randomisation_check_volume"]

logger = logging.getLogger(__name__)

#: Spearman correlation below which the maps are taken to depend on the learned weights
RANDOMISATION_PASS = 0.5


def randomisation_check_volume(
    fa_path: str | os.PathLike,
    mask_path: str | os.PathLike | None,
    network: torch.nn.Module,
    inferer: CAMInferer,
    eval_transform: Any,
    out_json: str | os.PathLike,
    class_idx: Any = None,
    slice_selection: str = "centre",
    slices_per_axis: int = 16,
    cam_slices: str = "trained",
    max_inputs: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    name: str | None = None,
) -> dict[str, Any]:
    """Model-randomisation check (Adebayo et al., NeurIPS 2018) of one FA map, written as JSON.

    The network's inputs for this volume (its slices through ``eval_transform``: those of the
    trained range with ``cam_slices="trained"``, at most ``max_inputs`` evenly spaced; or the whole
    volume for a 3D network) are mapped by the trained network and by a copy with re-initialised
    weights (:func:`~hcp_cam.cam.localization.randomization_check`): every layer, and the
    classifier alone. The maps are for the class of the written CAM (the volume's predicted class
    for ``None``). A map that explains what the network learned changes with the weights: a low
    Spearman correlation passes.

    Returns:
        what is written: ``spearman`` (``{"all_layers": r, "classifier": r}``, each in [-1, 1] or
        NaN), ``passed`` (all-layer r < :data:`RANDOMISATION_PASS`), ``interpretation`` (one line),
        ``n_inputs``, ``class``, ``method``, ``seed``.
    """
    from hcp_cam.cam.localization import randomization_check
    from hcp_cam.transforms import Slices25Dd, trained_slices

    vol = load_fa_with_mask(fa_path, mask_path)
    fa = torch.from_numpy(vol.fa)[None]
    brain = torch.from_numpy(vol.mask)[None].to(torch.float32)
    if getattr(network, "spatial_dims", 2) == 3:
        inputs = eval_transform({"image": fa, "mask": brain})["image"].as_tensor()[None]
    else:
        items = Slices25Dd("image", "mask", "mask")({"image": MetaTensor(fa), "mask": brain})
        if cam_slices == "trained":
            trained = trained_slices(tuple(fa.shape[1:]), brain[0], slice_selection, slices_per_axis)
            items = [it for it in items if it["index"] in trained[it["axis"]]]
        pick = np.unique(np.linspace(0, len(items) - 1, min(max_inputs, len(items))).round().astype(int))
        inputs = torch.stack([eval_transform(items[i])["image"].as_tensor() for i in pick])
    device = next(network.parameters()).device
    inputs = inputs.to(device)
    was_training = network.training
    network.eval()
    try:
        if class_idx is None:  # the volume's class, as in cam_volume: argmax of the mean logits
            with torch.no_grad():
                batches = [inputs[s : s + batch_size] for s in range(0, len(inputs), batch_size)]
                logits = torch.cat([network(b) for b in batches])
            class_idx = int(logits.mean(0).argmax())
        check = CAMInferer(inferer.method, inferer.target_layer, class_idx=class_idx)
        rho = {"all_layers": randomization_check(network, inputs, check, seed=seed)}
        if "classifier" in dict(network.named_modules()):
            rho["classifier"] = randomization_check(network, inputs, check, seed=seed, layers=["classifier"])
    finally:
        network.train(was_training)
    r = rho["all_layers"]
    if not np.isfinite(r):
        text = "undefined: the maps are constant, there is nothing to compare"
    elif r < RANDOMISATION_PASS:
        text = (
            f"low correlation ({r:.2f}): the maps change with the weights, as they should for a network "
            "that learned something (necessary, not sufficient, for maps that explain it)"
        )
    else:
        text = (
            f"high correlation ({r:.2f}): the maps barely depend on the learned weights; they may show the "
            "input's structure (edges, brain outline) rather than what the network learned"
        )
    result = {
        "acquisition": name or str(fa_path),
        "fa": str(fa_path),
        "method": inferer.method,
        "class": class_idx,
        "input": "volume" if getattr(network, "spatial_dims", 2) == 3 else f"slices ({cam_slices})",
        "n_inputs": int(inputs.shape[0]),
        "seed": seed,
        "spearman": {k: float(v) if np.isfinite(v) else None for k, v in rho.items()},  # NaN is not JSON
        "passed": bool(np.isfinite(r) and r < RANDOMISATION_PASS),
        "threshold": RANDOMISATION_PASS,
        "interpretation": text,
        "reference": "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018 (model randomisation)",
    }
    write_json_atomic(result, out_json)
    logger.info("randomisation check: Spearman %.3f (%s)", r, "passed" if result["passed"] else "not passed")
    return result
