"""Result plots are written as real PNG files that matplotlib reads back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread

from hcp_cam.errors import InputError
from hcp_cam.reports.plots import image_grid, plot_pr_roc_confusion, plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side=200, max_side=3000):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    h, w = img.shape[:2]
    assert min_side <= h <= max_side and min_side <= w <= max_side, img.shape
    # something is drawn: not a single flat colour
    assert img[..., :3].std() > 0.02
    return img


def _history(n=6, with_optional=True):
    epochs = np.arange(1, n + 1)
    df = pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": 0.7 / epochs,
            "train_accuracy": 1 - 0.5 / epochs,
            "val_loss": 0.8 / epochs,
            "val_accuracy": 1 - 0.6 / epochs,
        }
    )
    df.loc[::2, ["val_loss", "val_accuracy"]] = np.nan  # validation every other epoch
    if with_optional:
        df["val_subject_accuracy"] = 1 - 0.4 / epochs
        df["val_roc_auc"] = 0.9
    return df


def test_training_curves_from_csv(tmp_path):
    csv = tmp_path / "history.csv"
    _history().to_csv(csv, index=False)
    paths = plot_training_curves(csv, tmp_path / "plots")
    assert [p.name for p in paths] == ["curves.png", "accuracy.png", "loss.png"]
    for p in paths:
        assert_png(p)
    # nothing else (no temporary file) is left behind
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "accuracy.png",
        "curves.png",
        "loss.png",
    ]


def test_training_curves_tolerate_missing_columns(tmp_path):
    df = _history(with_optional=False).drop(columns=["val_loss"])
    paths = plot_training_curves(df, tmp_path)
    assert len(paths) == 3 and all(p.is_file() for p in paths)


def test_training_curves_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("step,foo\n1,2\n")
    with pytest.raises(InputError, match="bad.csv.*epoch"):
        plot_training_curves(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pr_roc_confusion(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    score = np.clip(0.3 * y + 0.7 * rng.random(40), 0, 1)
    paths = plot_pr_roc_confusion(y, score, (score > 0.5).astype(int), ["young", "old"], tmp_path)
    assert [p.name for p in paths] == ["test_pr.png", "test_roc.png", "test_confusion.png"]
    for p in paths:
        assert_png(p)


def test_pr_roc_confusion_multiclass_and_errors(tmp_path):
    y = np.array([0, 1, 2, 2, 1, 0])
    prob = np.eye(3)[[0, 1, 2, 1, 1, 0]] * 0.7 + 0.1
    paths = plot_pr_roc_confusion(y, prob, prob.argmax(1), ["a", "b", "c"], tmp_path, prefix="val")
    assert all(p.name.startswith("val_") for p in paths)
    with pytest.raises(InputError, match="two classes"):
        plot_pr_roc_confusion(y, prob[:, 0], y, ["a", "b", "c"], tmp_path)


def test_image_grid_shape_and_range():
    imgs = torch.arange(5 * 6 * 7, dtype=torch.float32).reshape(5, 1, 6, 7)
    grid = image_grid(imgs, nrow=3, padding=2)
    assert grid.shape == (3, 2 * (6 + 2) + 2, 3 * (7 + 2) + 2)
    assert grid.dtype == np.float32 and grid.min() == 0.0 and grid.max() == 1.0
    # first image, top-left pixel is its minimum (0), bottom-right its maximum (1); grey (3 equal channels)
    assert grid[0, 2, 2] == 0.0 and grid[0, 2 + 5, 2 + 6] == 1.0
    np.testing.assert_array_equal(grid[0], grid[2])
    # the unused sixth cell stays empty
    assert grid[:, 10:, 2 + 2 * 9 :].max() == 0.0


def test_image_grid_list_of_mixed_sizes_and_errors():
    grid = image_grid([np.ones((4, 4)), np.random.default_rng(0).random((1, 5, 3))], nrow=8, padding=0)
    assert grid.shape == (3, 5, 8)
    assert grid[:, :4, :4].max() == 0.0  # a constant image becomes 0
    with pytest.raises(InputError, match="no images"):
        image_grid([])
    with pytest.raises(InputError, match="got"):
        image_grid([np.zeros((2, 4, 4))])
