"""Localization scores on hand-made maps and regions, score tables, and the randomisation check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from hcp_cam.cam import BoundingBox, CAMInferer, EmptyCAMWarning
from hcp_cam.cam.localization import (
    box_iou,
    box_iou_with_roi,
    dice,
    energy_pointing_game,
    iou,
    localization_scores,
    map_rank_correlation,
    pointing_game,
    randomization_check,
    scores_table,
    write_scores_csv,
    write_scores_markdown,
)
from hcp_cam.errors import ConfigError, InputError


class SmallGAPNet(nn.Module):
    """A small real GAP network with the ``CAMNetwork`` interface."""

    def __init__(self, spatial_dims: int = 2, num_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.features = nn.Sequential(
            conv(1, 4, 3, padding=1),
            nn.ReLU(),
            Pool[Pool.MAX, spatial_dims](2),
            conv(4, width, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x)).flatten(1)))


def _blob_batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images; class 1 has a bright 4x4 square at a random place."""
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.3
    y = torch.randint(0, 2, (n,), generator=g)
    for i in torch.nonzero(y)[:, 0].tolist():
        r, c = torch.randint(2, 11, (2,), generator=g).tolist()
        x[i, 0, r : r + 4, c : c + 4] += 2.0
    return x, y


@pytest.fixture(scope="module")
def trained():
    """A GAP network trained (60 Adam steps, ~1 s) to find the square, and held-out positives."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = SmallGAPNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        x, y = _blob_batch(32, g)
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = _blob_batch(32, g)
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    return net, x[y == 1][:8], accuracy


def test_pointing_game_peak_in_and_out_and_ties():
    cam = np.zeros((6, 7))
    cam[2, 3] = 5.0
    roi = np.zeros((6, 7), dtype=np.uint8)
    roi[1:4, 2:5] = 1
    assert pointing_game(cam, roi) is True
    assert pointing_game(cam, 1 - roi) is False
    tie = np.zeros((6, 7))
    tie[1, 1] = tie[4, 4] = 1.0  # equal maxima: the first in C order, (1, 1), is the peak
    only_second = np.zeros((6, 7), dtype=bool)
    only_second[4, 4] = True
    assert pointing_game(tie, only_second) is False
    assert pointing_game(tie, ~only_second) is True


def test_energy_pointing_game_exact_share():
    cam = np.zeros((5, 6, 4))
    roi = np.zeros((5, 6, 4), dtype=bool)
    roi[0:3, 0:3, :] = True
    cam[0, 0, 0] = 3.0  # inside
    cam[2, 2, 1] = -4.0  # inside but negative: not counted
    cam[4, 5, 3] = 1.0  # outside
    assert energy_pointing_game(cam, roi) == 0.75
    assert energy_pointing_game(torch.as_tensor(cam), torch.as_tensor(roi)) == 0.75
    with pytest.warns(EmptyCAMWarning):
        assert np.isnan(energy_pointing_game(-np.abs(cam), roi))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_iou_and_dice_exact_on_known_overlap(spatial_dims):
    shape = (10, 10) + ((4,) * (spatial_dims == 3))
    cam = np.zeros(shape)
    roi = np.zeros(shape, dtype=bool)
    cam[2:6, 2:6] = 1.0  # 16 voxels per plane
    roi[4:8, 4:8] = True  # 16 voxels per plane, 4 shared
    cam[7, 7] = 1.0  # above the threshold, in the region, but not the largest component
    assert iou(cam, roi) == pytest.approx(4 / 28, abs=1e-12)
    assert dice(cam, roi) == pytest.approx(8 / 32, abs=1e-12)
    # every voxel above the threshold (not the largest component) would give 5 / 28 and 10 / 33


def test_box_iou_2d_3d_disjoint_and_empty():
    a, b = BoundingBox(2, (0, 0), (3, 3)), BoundingBox(2, (2, 2), (5, 5))
    assert box_iou(a, b) == pytest.approx(4 / 28) and box_iou(a, a) == 1.0
    c, d = BoundingBox(3, (0, 0, 0), (1, 1, 1)), BoundingBox(3, (1, 1, 1), (2, 2, 2))
    assert box_iou(c, d) == pytest.approx(1 / 15)
    assert box_iou(c, BoundingBox(3, (5, 5, 5), (6, 6, 6))) == 0.0
    assert box_iou(c, BoundingBox.empty(3)) == 0.0
    with pytest.raises(InputError, match="2D box"):
        box_iou(a, c)


def test_box_iou_with_roi_uses_the_box_around_the_whole_region():
    cam = np.zeros((10, 10))
    cam[2:6, 2:6] = 1.0  # box (2, 2)-(5, 5), 16 voxels
    roi = np.zeros((10, 10), dtype=bool)
    roi[4, 4:8] = True
    roi[4:8, 4] = True  # an L: its box is (4, 4)-(7, 7), 16 voxels
    assert box_iou_with_roi(cam, roi) == pytest.approx(4 / 28)


def test_localization_scores_dict_and_invalid_input():
    cam = np.zeros((10, 10))
    cam[2:6, 2:6] = 1.0
    cam[3, 3] = 2.0
    roi = np.zeros((10, 10), dtype=bool)
    roi[3:8, 3:8] = True
    scores = localization_scores(cam, roi, fraction=0.2)
    assert scores["pointing_game"] is True
    assert scores["energy_pointing_game"] == pytest.approx(10 / 17)
    assert scores["iou"] == pytest.approx(9 / 32) and scores["dice"] == pytest.approx(18 / 41)
    assert scores["box_iou"] == pytest.approx(9 / 32)
    assert scores["cam_box"]["min_index"] == [2, 2] and scores["roi_voxels"] == 25
    assert localization_scores(cam, roi, fraction=0.6)["iou"] == pytest.approx(1 / 25)
    with pytest.raises(InputError, match="differs from region shape"):
        pointing_game(cam, roi[:5])
    with pytest.raises(InputError, match="region .* is empty"):
        iou(cam, np.zeros_like(roi))
    with pytest.warns(EmptyCAMWarning):
        empty = localization_scores(np.zeros((10, 10)), roi)
    assert empty["iou"] == 0.0 and empty["cam_box"]["empty"] and np.isnan(empty["energy_pointing_game"])


def test_scores_table_csv_and_markdown(tmp_path):
    cam = np.zeros((8, 8))
    cam[1:4, 1:4] = 1.0
    roi = np.zeros((8, 8), dtype=bool)
    roi[2:6, 2:6] = True
    rows = [
        {"subject": s, "axis": 2, **localization_scores(cam * (i + 1), roi)}
        for i, s in enumerate(["100206", "a|b"])
    ]
    table = scores_table(rows)
    assert len(table) == 2 and {"subject", "iou", "cam_box.min_index", "pointing_game"} <= set(table.columns)
    csv = write_scores_csv(table, tmp_path / "out" / "scores.csv")
    back = pd.read_csv(csv, dtype={"subject": str})
    assert list(back["subject"]) == ["100206", "a|b"]
    np.testing.assert_allclose(back["iou"], table["iou"])
    md = write_scores_markdown(table, tmp_path / "out" / "scores.md").read_text().splitlines()
    assert len(md) == 4 and md[0].startswith("| subject | axis |") and set(md[1]) <= {"|", " ", "-"}
    assert f"{table['iou'][0]:.3f}" in md[2] and "a\\|b" in md[3]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores.csv", "scores.md"]


def test_map_rank_correlation():
    a = torch.randn(2, 1, 6, 6)
    assert map_rank_correlation(a, a) == pytest.approx(1.0)
    assert map_rank_correlation(a, -a) == pytest.approx(-1.0)
    assert map_rank_correlation(a, a.exp()) == pytest.approx(1.0)  # ranks only
    assert map_rank_correlation(torch.zeros(1, 1, 3, 3), a[:1, :, :3, :3]) == 0.0  # constant vs varying
    with pytest.warns(EmptyCAMWarning):
        assert np.isnan(map_rank_correlation(torch.zeros(1, 1, 3, 3), torch.ones(1, 1, 3, 3)))
    with pytest.raises(InputError, match="same"):
        map_rank_correlation(a, a[:1])


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_randomization_check_trained_vs_random_and_self(trained, method):
    net, x, accuracy = trained
    assert accuracy >= 0.9  # the network did learn the square
    before = [p.detach().clone() for p in net.parameters()]
    inferer = CAMInferer(method, class_idx=1)
    rng_state = torch.random.get_rng_state()
    # the same weights (nothing re-initialised): identical maps
    assert randomization_check(net, x, inferer, layers=()) == pytest.approx(1.0)
    rhos = [randomization_check(net, x, inferer, seed=s) for s in range(3)]
    assert np.mean(rhos) < 0.6, rhos  # weak: the maps depend on the learned weights
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # global random state untouched
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    # cascading from the top: only the classifier re-initialised
    assert randomization_check(net, x, inferer, layers=["classifier"]) < 0.99
    with pytest.raises(ConfigError, match="no layer"):
        randomization_check(net, x, inferer, layers=["head"])


def test_peak_distance_is_zero_inside_and_metric_outside():
    from hcp_cam.cam.localization import peak_distance

    roi = np.zeros((10, 12, 8), bool)
    roi[2:4, 2:4, 2:4] = True
    cam = np.zeros(roi.shape, np.float32)
    cam[3, 3, 3] = 1.0
    assert peak_distance(cam, roi) == 0.0
    cam[3, 3, 3] = 0.0
    cam[3, 8, 3] = 2.0  # 5 voxels along axis 1 from the region's last voxel (index 3)
    assert peak_distance(cam, roi) == 5.0
    assert peak_distance(cam, roi, spacing=(1.0, 2.5, 1.0)) == 12.5
    scores = localization_scores(cam, roi, spacing=(1.0, 2.5, 1.0))
    assert scores["peak_distance"] == 12.5 and not scores["pointing_game"]
    with pytest.raises(InputError, match="empty"):
        peak_distance(cam, np.zeros_like(roi))
