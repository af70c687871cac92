"""Deletion/insertion faithfulness on a planted network whose decision depends only on a known region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from hcp_cam.cam.faithfulness import (
    SubjectProbability,
    curve_auc,
    deletion_insertion_curves,
    relevance_order,
)
from hcp_cam.cam.faithfulness_run import MAPS, faithfulness_for_volume, plot_faithfulness
from hcp_cam.io import save_nifti_like
from hcp_cam.transforms import build_slice_transforms

SHAPE = (24, 24, 16)  # axis-2 slices are 24 x 24: the eval chain at size 24 neither resizes nor pads
SLICES = {2: list(range(4, 12))}
STEPS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class RegionReadout(nn.Module):
    """A GAP network whose logit difference is a fixed linear read-out of the slice's z-scored FA in a
    disc: ``logit_old - logit_young = -gain * mean(x * disc) + bias``; nothing else enters."""

    spatial_dims = 2

    def __init__(self, disc: np.ndarray, gain: float = 60.0, bias: float = -1.0):
        super().__init__()
        self.register_buffer("disc", torch.from_numpy(disc.astype(np.float32))[None, None])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[gain / 2], [-gain / 2]]))
            self.classifier.bias.copy_(torch.tensor([-bias / 2, bias / 2]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.disc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _planted_subject(seed: int = 0):
    """An "old" brain: smooth FA with noise, and a cylinder along axis 2 with lowered FA (the region)."""
    rng = np.random.default_rng(seed)
    g = np.indices(SHAPE).astype(float)
    c = (np.array(SHAPE, dtype=float)[:, None, None, None] - 1) / 2
    brain = (((g - c) / (c * 0.95)) ** 2).sum(0) < 1
    fa = 0.45 + 0.1 * np.sin(g[0] / 3.0) + 0.03 * rng.standard_normal(SHAPE)
    disc = ((g[0, :, :, 0] - 3 * np.pi) ** 2 + (g[1, :, :, 0] - 12) ** 2) <= 2.5**2  # where sin(x / 3) = 0
    # inside the scored slices only: kept slices beside them would carry the low FA back in (imputation
    # fills a hole from its rim)
    roi = disc[:, :, None] & brain & (g[2] >= 4) & (g[2] <= 11)
    fa[roi] -= 0.25
    return np.where(brain, fa, 0).astype(np.float32), brain, roi, disc


@pytest.fixture(scope="module")
def planted():
    fa, brain, roi, disc = _planted_subject()
    net = RegionReadout(disc).eval()
    eval_chain = build_slice_transforms(image_size=24)[1]
    prob = SubjectProbability(net, eval_chain, brain, class_idx=1, indices=SLICES)
    return fa, brain, roi, net, eval_chain, prob


def test_subject_probability_is_the_mean_slice_probability_of_the_monai_chain(planted):
    fa, brain, roi, net, eval_chain, prob = planted
    p = prob(fa)
    assert p > 0.9  # the planted read-out calls the lowered region "old"
    # the same number through the MONAI chain slice by slice (no batched twin)
    slow = SubjectProbability(net, _Unbatched(eval_chain), brain, 1, SLICES)
    assert slow(fa) == pytest.approx(p, abs=1e-5)
    # and by hand: softmax of every slice's logits, averaged
    from hcp_cam.transforms.slice_batch import slice_stack

    idx = torch.as_tensor(SLICES[2])
    x = eval_chain.batched(
        slice_stack(torch.from_numpy(fa)[None], 2, idx),
        slice_stack(torch.from_numpy(brain)[None].float(), 2, idx),
    )
    with torch.no_grad():
        by_hand = float(torch.softmax(net(x), 1)[:, 1].mean())
    assert by_hand == pytest.approx(p, abs=1e-6)


class _Unbatched:
    """The eval chain without its batched twin: SubjectProbability falls back to slice by slice."""

    def __init__(self, chain):
        self.chain = chain

    def __call__(self, item):
        return self.chain(item)


def _curves(planted, saliency, steps=STEPS):
    fa, brain, roi, net, eval_chain, prob = planted
    domain = brain.copy()
    domain[:, :, [i for i in range(SHAPE[2]) if i not in SLICES[2]]] = False
    tie = np.random.default_rng(0).random(int(domain.sum()))
    order = relevance_order(saliency, domain, tie)
    return deletion_insertion_curves(fa, brain, order, prob, steps, noise_std=0.01, seed=[0, 1])


def test_deleting_the_true_region_drops_the_probability_fastest(planted):
    fa, brain, roi, net, eval_chain, prob = planted
    rng = np.random.default_rng(1)
    maps = {
        "region": roi.astype(float),
        "random": rng.random(SHAPE),
        "fa": fa.astype(float),  # high FA first: the region comes last
        "region_last": 1.0 - roi,
    }
    curves = {k: _curves(planted, v) for k, v in maps.items()}
    d = {k: np.asarray(c["deletion"]) for k, c in curves.items()}
    # every curve starts at the intact volume and ends with every scored voxel removed
    for k in maps:
        assert d[k][0] == pytest.approx(prob(fa))
        assert d[k][-1] == pytest.approx(d["region"][-1], abs=1e-6)
    # removing the region (6% of the scored voxels) takes the "old" call away by the 10% step ...
    assert d["region"][3] < 0.5 < d["random"][3]
    # ... and the region's curve is the lowest at every step in between
    for k in ("random", "fa", "region_last"):
        assert np.all(d["region"][1:-1] <= d[k][1:-1] + 1e-6), (k, d["region"], d[k])
    aucs = {k: c["deletion_auc"] for k, c in curves.items()}
    assert min(aucs, key=aucs.get) == "region"
    assert aucs["region"] < 0.5 * aucs["random"]
    # insertion: restoring the region first brings the call back first
    ins = {k: c["insertion_auc"] for k, c in curves.items()}
    assert max(ins, key=ins.get) == "region"


def test_the_cam_of_the_planted_network_is_faithful_and_the_files_are_written(planted, tmp_path):
    fa, brain, roi, net, eval_chain, prob = planted
    import nibabel as nib

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    ref = nib.Nifti1Image(fa, affine)
    fa_path = save_nifti_like(fa, ref, tmp_path / "fa.nii.gz")
    mask_path = save_nifti_like(brain.astype(np.uint8), ref, tmp_path / "mask.nii.gz")
    # a network trained on axis 2 only: the maps and the probabilities use those slices alone
    results = faithfulness_for_volume(fa_path, mask_path, net, eval_chain, 1, SLICES, steps=STEPS, name="s/a")
    by_map = {r["map"]: r for r in results}
    assert list(by_map) == list(MAPS)
    assert by_map["cam"]["prob_original"] == pytest.approx(prob(fa), abs=1e-5)
    assert by_map["cam"]["deletion_auc"] < by_map["random"]["deletion_auc"]
    assert by_map["cam"]["insertion_auc"] > by_map["random"]["insertion_auc"]
    rows = [
        {
            "subject": "s",
            "acquisition": "a",
            "group": "old",
            "map": r["map"],
            "curve": c,
            "fraction": f,
            "probability": p,
        }
        for r in results
        for c in ("deletion", "insertion")
        for f, p in zip(r["fractions"], r[c], strict=True)
    ]
    png = plot_faithfulness(pd.DataFrame(rows), tmp_path / "faithfulness.png", class_name="old")
    assert png.stat().st_size > 5000


def test_auc_and_steps():
    assert curve_auc([0, 0.5, 1], [1, 1, 1]) == pytest.approx(1.0)
    assert curve_auc([0, 0.1, 1], [1, 0, 0]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion_curves(
            np.zeros(SHAPE), np.ones(SHAPE, bool), np.arange(3), lambda v: 0.5, (0.1, 1.0)
        )
    # ties go to the lower tie-break value first, NaN ranks last
    sal = np.zeros((2, 2, 1))
    sal[0, 0, 0] = np.nan
    sal[1, 1, 0] = 1.0
    order = relevance_order(sal, np.ones_like(sal, bool), tie_break=np.array([0.9, 0.1, 0.5, 0.3]))
    assert order[0] == 3 and order[-1] == 0 and list(order[1:3]) == [1, 2]


def test_bad_settings_are_refused_before_any_work(planted, tmp_path):
    from types import SimpleNamespace

    from hcp_cam.cam.faithfulness_run import run_faithfulness
    from hcp_cam.errors import ConfigError

    fa, brain, roi, net, eval_chain, prob = planted
    prepared = SimpleNamespace(labels=["young", "old"], entries={"test": [{"fa": "/nonexistent"}]})
    prepared.slice_selection, prepared.slices_per_axis = "centre", 8
    with pytest.raises(ConfigError, match="faithfulness_noise"):
        run_faithfulness(prepared, net, tmp_path, eval_chain, noise_std=-0.1)
    with pytest.raises(ConfigError, match="steps"):
        run_faithfulness(prepared, net, tmp_path, eval_chain, steps=(0.0, 0.5))
    with pytest.raises(ConfigError, match="cam_class"):
        run_faithfulness(prepared, net, tmp_path, eval_chain, cam_class="elderly")
    assert run_faithfulness(prepared, net, tmp_path, eval_chain, enabled=False) is None
    # no class probability to follow: a regressor's output, maps of every class or one-vs-rest
    assert run_faithfulness(prepared, net, tmp_path, eval_chain, task="regression") is None
    assert run_faithfulness(prepared, net, tmp_path, eval_chain, cam_class="each_vs_rest") is None
    assert not list(tmp_path.iterdir())


def test_run_faithfulness_writes_its_three_files_all_or_none(planted, tmp_path, monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    import nibabel as nib

    from hcp_cam.cam import faithfulness_run
    from hcp_cam.cam.faithfulness_run import run_faithfulness

    fa, brain, roi, net, eval_chain, prob = planted
    ref = nib.Nifti1Image(fa, np.diag([2.0, 2.0, 2.0, 1.0]))
    entry = {
        "subject": "s",
        "acquisition": "a",
        "group": "old",
        "fa": str(save_nifti_like(fa, ref, tmp_path / "fa.nii.gz")),
        "mask_abs": str(save_nifti_like(brain.astype(np.uint8), ref, tmp_path / "mask.nii.gz")),
    }
    prepared = SimpleNamespace(labels=["young", "old"], entries={"test": [entry]})
    prepared.slice_selection, prepared.slices_per_axis = "centre", 8
    out = tmp_path / "run"
    (out / "cam").mkdir(parents=True)

    def broken(curves, path, class_name=""):  # fails after writing part of its file
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(faithfulness_run, "plot_faithfulness", broken)
    with pytest.raises(OSError, match="disk full"):
        run_faithfulness(prepared, net, out, eval_chain, cam_slices="all", steps=(0.0, 0.5, 1.0))
    assert list((out / "cam").iterdir()) == []  # neither table nor a temporary file
    monkeypatch.undo()
    table = run_faithfulness(prepared, net, out, eval_chain, cam_slices="all", steps=(0.0, 0.5, 1.0))
    assert sorted(p.name for p in (out / "cam").iterdir()) == [
        "faithfulness.csv",
        "faithfulness.png",
        "faithfulness_curves.csv",
    ]
    assert list(table["map"]) == list(MAPS) and (table["class"] == "old").all()
    written = pd.read_csv(out / "cam" / "faithfulness.csv", dtype={"subject": str})
    np.testing.assert_allclose(written["deletion_auc"], table["deletion_auc"])
    assert len(pd.read_csv(out / "cam" / "faithfulness_curves.csv")) == 5 * 2 * 3
