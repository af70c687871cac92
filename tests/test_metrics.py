"""Metrics against values worked out by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hcp_cam.errors import InputError
from hcp_cam.training.metrics import (
    aggregate_by_subject,
    average_precision,
    classification_metrics,
    confusion_matrix,
    constant_prediction_warning,
    precision_recall_curve,
    roc_auc,
    roc_curve,
    subject_and_slice_metrics,
    summarize_folds,
)


def test_binary_metrics_by_hand():
    # true 0 0 0 1 1 1 1 ; predicted (p>0.5) 0 1 0 1 1 0 1 -> TP 3, FP 1, FN 1, TN 2
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.3, 0.8, 0.7, 0.2, 0.9])
    m = classification_metrics(y, p1)
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert m["majority_baseline"] == pytest.approx(4 / 7)
    assert m["n"] == 7
    # pairs (pos, neg) ranked right: 0.8>all 3, 0.7>all 3, 0.9>all 3, 0.2>0.1 only -> 10 of 12
    assert m["roc_auc"] == pytest.approx(10 / 12)
    # the (N, 2) form and a torch tensor give the same numbers
    m2 = classification_metrics(torch.tensor(y), torch.tensor(np.stack([1 - p1, p1], 1)))
    assert m2 == pytest.approx(m)


def test_auc_perfect_inverted_ties_and_one_class():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: one half per pair
    assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.4, 0.9]))
    m = classification_metrics([1, 1, 1], [0.2, 0.4, 0.9])
    assert math.isnan(m["roc_auc"]) and m["accuracy"] == pytest.approx(1 / 3)


def test_auc_random_scores_near_half():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    assert abs(roc_auc(y, rng.random(4000)) - 0.5) < 0.03


def test_multiclass_macro_and_missing_class():
    y = np.array([0, 1, 2, 2])
    prob = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.35, 0.05]])
    m = classification_metrics(y, prob)
    # predicted 0 1 2 0: class precisions 1/2, 1, 1; recalls 1, 1, 1/2
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["recall"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    # one-vs-rest AUCs: class 0: 0.8 beats 0.2, 0.1, 0.6 -> 1; class 1: 0.7 beats all -> 1;
    # class 2: positives 0.7 and 0.05 against negatives 0.1, 0.1 -> 2 of 4 pairs
    assert m["roc_auc"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert math.isnan(classification_metrics([0, 0, 1], np.full((3, 3), 1 / 3))["roc_auc"])


def test_zero_predicted_positives_gives_zero_precision_not_crash():
    m = classification_metrics([0, 1, 1], [0.1, 0.2, 0.3])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_roc_curve_endpoints_and_values():
    fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thr[0] == np.inf and np.all(np.diff(thr) < 0)


def test_precision_recall_curve_endpoints_and_ap():
    precision, recall, thr = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    # thresholds increasing 0.1, 0.35, 0.4, 0.8
    np.testing.assert_allclose(thr, [0.1, 0.35, 0.4, 0.8])
    np.testing.assert_allclose(precision, [0.5, 2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.5, 0.5, 0.0])
    # AP = 0.5 * 1 (recall 0->0.5 at precision 1) + 0.5 * 2/3
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 + 1 / 3)


def test_confusion_matrix():
    cm = confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    with pytest.raises(InputError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_aggregate_by_subject_mean_and_vote():
    subjects = ["b", "a", "b", "a", "b"]
    y = [1, 0, 1, 0, 1]
    p1 = np.array([0.9, 0.2, 0.4, 0.6, 0.35])
    names, ys, ps = aggregate_by_subject(subjects, y, p1)
    assert names == ["b", "a"]  # first-appearance order
    np.testing.assert_array_equal(ys, [1, 0])
    np.testing.assert_allclose(ps[:, 1], [(0.9 + 0.4 + 0.35) / 3, 0.4])
    np.testing.assert_allclose(ps.sum(1), 1.0)
    _, _, pv = aggregate_by_subject(subjects, y, p1, method="vote")
    np.testing.assert_allclose(pv[:, 1], [1 / 3, 0.5])


def test_aggregate_rejects_inconsistent_labels_and_bad_method():
    with pytest.raises(InputError, match="'s1'.*different labels"):
        aggregate_by_subject(["s1", "s1"], [0, 1], [0.2, 0.3])
    with pytest.raises(InputError, match="method"):
        aggregate_by_subject(["s1"], [0], [0.2], method="median")
    with pytest.raises(InputError, match="entries"):
        aggregate_by_subject(["s1"], [0, 0], [0.2, 0.1])


def test_subject_and_slice_metrics():
    subjects = ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"]
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p1 = [0.2, 0.7, 0.4, 0.4, 0.9, 0.3, 0.8, 0.6]  # subject means 0.45, 0.4, 0.6, 0.7
    m = subject_and_slice_metrics(subjects, y, p1)
    assert m["n_slices"] == 8 and m["n_subjects"] == 4
    assert m["slice_accuracy"] == pytest.approx(6 / 8)
    assert m["subject_accuracy"] == 1.0 and m["roc_auc"] == 1.0
    assert m["majority_baseline"] == 0.5
    assert m["prediction_spread"] == pytest.approx(np.std([0.45, 0.4, 0.6, 0.7]))
    assert m["constant_predictions"] is False


def test_constant_predictions_detected():
    # the batch-norm failure of docs/architecture.md, "Lessons": every held-out subject gets p = 0.99
    subjects = [f"s{i // 2}" for i in range(10)]
    y = [0] * 6 + [1] * 4
    m = subject_and_slice_metrics(subjects, y, np.full(10, 0.99))
    assert m["constant_predictions"] is True
    assert m["prediction_spread"] == pytest.approx(0.0)
    assert m["subject_accuracy"] == pytest.approx(0.4) and m["majority_baseline"] == pytest.approx(0.6)


def test_constant_prediction_warning_tells_a_collapse_from_a_calibration_shift():
    subjects = [f"s{i}" for i in range(8)]
    y = [0] * 4 + [1] * 4
    # collapsed: the same answer whatever the subject
    collapsed = constant_prediction_warning(subject_and_slice_metrics(subjects, y, np.full(8, 0.99)))
    assert collapsed and "batch-norm" in collapsed and "AUC 0.50" in collapsed
    # shifted: the whole-brain fold of docs/results.md, old subjects ranked above young, all below 0.5
    shifted_p = np.array([0.31, 0.33, 0.32, 0.34, 0.45, 0.47, 0.46, 0.45])
    shifted = constant_prediction_warning(subject_and_slice_metrics(subjects, y, shifted_p))
    assert shifted and "calibration" in shifted and "AUC 1.00" in shifted and "batch-norm" not in shifted
    # not constant: no warning
    assert (
        constant_prediction_warning(
            subject_and_slice_metrics(subjects, y, np.r_[shifted_p[:4], 0.6, 0.7, 0.6, 0.6])
        )
        is None
    )


def test_summarize_folds():
    s = summarize_folds([0.8, 0.9, 1.0, float("nan")])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1)
    assert (s["min"], s["max"], s["n"], s["n_nan"]) == (0.8, 1.0, 3, 1)
    assert math.isnan(summarize_folds([0.7])["std"])
    assert summarize_folds([])["n"] == 0


@pytest.mark.parametrize(
    "y, prob, match",
    [([], np.zeros((0, 2)), "empty"), ([0, 1], [0.2], "entries"), ([0, 1.5], [0.1, 0.2], "integer")],
)
def test_invalid_inputs(y, prob, match):
    with pytest.raises(InputError, match=match):
        classification_metrics(y, prob)
