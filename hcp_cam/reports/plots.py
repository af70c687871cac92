"""Result plots as PNG: training curves, precision-recall / ROC / confusion matrix, image grids.

Figures come from :func:`hcp_cam.figure_io.new_figure` (an Agg canvas, no ``pyplot``) and are
written atomically by :func:`hcp_cam.figure_io.save_figure`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hcp_cam.errors import InputError
from hcp_cam.figure_io import new_figure, save_figure
from hcp_cam.training.metrics import (
    average_precision,
    confusion_matrix,
    precision_recall_curve,
    roc_auc,
    roc_curve,
)

__all__ = ["new_figure", "save_figure", "plot_training_curves", "plot_pr_roc_confusion", "image_grid"]

HISTORY_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
OPTIONAL_COLUMNS = ("val_subject_accuracy", "val_roc_auc")
# a regression run's history (task regression): MAE in years instead of accuracy
REGRESSION_COLUMNS = ("train_mae", "val_mae", "val_subject_mae", "val_mean_age_baseline")


def _read_history(history: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    if isinstance(history, pd.DataFrame):
        return history
    path = Path(history)
    if not path.is_file():
        raise InputError("training history not found", path)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read as a CSV table: {e}", path) from e


def _series(df: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epoch, value) of a column with its missing entries left out (validation every k epochs)."""
    if column not in df:
        return None
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(values)
    if not keep.any():
        return None
    return df["epoch"].to_numpy(dtype=np.float64)[keep], values[keep]


def _plot_columns(ax, df: pd.DataFrame, columns: Sequence[str], ylabel: str, title: str) -> None:
    drawn = 0
    for column in columns:
        s = _series(df, column)
        if s is not None:
            ax.plot(*s, marker="o" if len(s[0]) < 30 else None, ms=3, label=column)
            drawn += 1
    if drawn == 0:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
    else:
        ax.legend(fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def plot_training_curves(history: pd.DataFrame | str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Training and validation accuracy and loss per epoch.

    Args:
        history: a table (or the path of its CSV) with an ``epoch`` column and any of
            ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy`` (slice level),
            ``val_subject_accuracy``, ``val_roc_auc``; missing columns and empty cells (epochs
            without validation) are tolerated.
        out_dir: folder to write into (created if needed).

    Returns:
        ``[curves.png, accuracy.png, loss.png]``: four panels (training accuracy, validation
        accuracy, training loss, validation loss), then training and validation together. A
        regression history (``train_mae``, ``val_mae``, ``val_subject_mae``, ``val_mean_age_baseline``)
        gives MAE panels in years instead, and ``mae.png`` instead of ``accuracy.png``.

    Raises:
        InputError: the CSV is missing or unreadable, or has no ``epoch`` column or none of the
            metric columns.
    """
    df = _read_history(history)
    where = history if not isinstance(history, pd.DataFrame) else None
    if "epoch" not in df:
        raise InputError(f"training history has no 'epoch' column (columns: {list(df.columns)})", where)
    if not any(_series(df, c) is not None for c in HISTORY_COLUMNS + OPTIONAL_COLUMNS + REGRESSION_COLUMNS):
        raise InputError(f"training history holds none of the columns {HISTORY_COLUMNS}", where)
    out_dir = Path(out_dir)
    val_acc = ("val_accuracy",) + OPTIONAL_COLUMNS
    if any(_series(df, c) is not None for c in REGRESSION_COLUMNS):
        return _regression_curves(df, out_dir)

    return _curves(df, out_dir, "accuracy", ("train_accuracy",), val_acc, "accuracy / AUC",
                   ("training accuracy", "validation accuracy"))  # fmt: skip


def _regression_curves(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The curves of a regression history: MAE (years) and loss, as in :func:`plot_training_curves`."""
    val_mae = ("val_mae", "val_subject_mae", "val_mean_age_baseline")
    return _curves(df, out_dir, "mae", ("train_mae",), val_mae, "MAE (years)",
                   ("training MAE (slices)", "validation MAE (slices, subjects, baseline)"))  # fmt: skip


def _curves(
    df: pd.DataFrame,
    out_dir: Path,
    name: str,
    train: tuple[str, ...],
    val: tuple[str, ...],
    ylabel: str,
    titles: tuple[str, str],
) -> list[Path]:
    """``curves.png`` (the task's metric and the loss, training and validation apart), then
    ``<name>.png`` and ``loss.png`` (training and validation together)."""
    fig = new_figure(10, 7.5)
    axes = fig.subplots(2, 2)
    _plot_columns(axes[0, 0], df, train, ylabel, titles[0])
    _plot_columns(axes[0, 1], df, val, ylabel, titles[1])
    _plot_columns(axes[1, 0], df, ("train_loss",), "loss", "training loss")
    _plot_columns(axes[1, 1], df, ("val_loss",), "loss", "validation loss")
    fig.tight_layout()
    paths = [save_figure(fig, out_dir / "curves.png")]
    for stem, columns, label in ((name, train + val, ylabel), ("loss", ("train_loss", "val_loss"), "loss")):
        fig = new_figure(6, 4.5)
        _plot_columns(fig.add_subplot(), df, columns, label, f"{stem}: training and validation")
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"{stem}.png"))
    return paths


def plot_pr_roc_confusion(
    y_true,
    score,
    y_pred,
    labels: Sequence[str],
    out_dir: str | os.PathLike,
    prefix: str = "test",
) -> list[Path]:
    """Precision-recall curve, ROC curve and confusion matrix of one evaluation.

    Args:
        y_true: ``(N,)`` integer classes ``0..C-1``.
        score: ``(N,)`` the probability of class 1 (two classes), or ``(N, C)`` probabilities
            (two classes: column 1 is used; more: one one-vs-rest curve per class).
        y_pred: ``(N,)`` predicted classes, for the confusion matrix.
        labels: ``C`` class names, in class-index order.
        out_dir: folder to write into.
        prefix: file name prefix.

    Returns:
        ``[{prefix}_pr.png, {prefix}_roc.png, {prefix}_confusion.png]``; the legends give the
        average precision and the AUC, the matrix cells their counts.
    """
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    s = np.asarray(score, dtype=np.float64)
    n_classes = len(labels)
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if s.ndim == 1:
        if n_classes != 2:
            raise InputError(f"a 1D score means two classes, but {n_classes} labels were given")
        curves = [(labels[1], y == 1, s)]
    else:
        if s.shape[1] != n_classes:
            raise InputError(f"score has {s.shape[1]} columns but {n_classes} labels were given")
        curves = [(labels[c], y == c, s[:, c]) for c in range(n_classes)]
    if s.shape[0] != y.size:
        raise InputError(f"score has {s.shape[0]} rows but y_true has {y.size} entries")
    out_dir = Path(out_dir)
    paths = []

    fig = new_figure(5.5, 5)
    ax = fig.add_subplot()
    for name, positive, sc in curves:
        precision, recall, _ = precision_recall_curve(positive, sc)
        ax.step(recall, precision, where="post", label=f"{name} (AP = {average_precision(positive, sc):.3f})")
    ax.axhline(float(np.mean(curves[0][1])), ls="--", color="grey", lw=1, label="chance")
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / f"{prefix}_pr.png"))

    fig = new_figure(5.5, 5)
    ax = fig.add_subplot()
    for name, positive, sc in curves:
        fpr, tpr, _ = roc_curve(positive, sc)
        ax.plot(fpr, tpr, label=f"{name} (AUC = {roc_auc(positive, sc):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(
        xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02)
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / f"{prefix}_roc.png"))

    cm = confusion_matrix(y, y_pred, n_classes)
    fig = new_figure(1.5 + 1.1 * n_classes, 1.2 + 1.1 * n_classes)
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", vmin=0)
    for (i, j), count in np.ndenumerate(cm):
        dark = count > cm.max() / 2
        ax.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(n_classes), labels)
    ax.set_yticks(range(n_classes), labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / f"{prefix}_confusion.png"))
    return paths


def image_grid(images, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile images into one ``(3, H', W')`` float32 image in ``[0, 1]`` for TensorBoard.

    Args:
        images: ``(N, 1, H, W)``, ``(N, 3, H, W)`` or ``(N, H, W)`` array or tensor, or a list of
            ``(1, H, W)`` / ``(H, W)`` images (smaller ones are placed top-left in their cell).
        nrow: images per row.
        padding: pixels between cells (value 0).

    Returns:
        ``(3, rows * (H + p) + p, nrow' * (W + p) + p)`` with ``nrow' = min(nrow, N)``. Each image
        is scaled to ``[0, 1]`` by its own minimum and maximum (a constant image becomes 0).
    """
    items = [
        np.asarray(im.detach().cpu() if hasattr(im, "detach") else im, dtype=np.float32) for im in images
    ]
    if not items:
        raise InputError("image_grid got no images")
    chw = []
    for im in items:
        if im.ndim == 2:
            im = im[None]
        if im.ndim != 3 or im.shape[0] not in (1, 3):
            raise InputError(f"each image must be (H, W), (1, H, W) or (3, H, W), got {im.shape}")
        im = np.nan_to_num(im)
        lo, hi = float(im.min()), float(im.max())
        im = (im - lo) / (hi - lo) if hi > lo else np.zeros_like(im)
        chw.append(np.repeat(im, 3, axis=0) if im.shape[0] == 1 else im)
    h = max(im.shape[1] for im in chw)
    w = max(im.shape[2] for im in chw)
    ncol = max(1, min(nrow, len(chw)))
    nrows = -(-len(chw) // ncol)
    grid = np.zeros((3, nrows * (h + padding) + padding, ncol * (w + padding) + padding), dtype=np.float32)
    for n, im in enumerate(chw):
        r, c = divmod(n, ncol)
        y0, x0 = padding + r * (h + padding), padding + c * (w + padding)
        grid[:, y0 : y0 + im.shape[1], x0 : x0 + im.shape[2]] = im
    return grid
