"""Calibrated subject calls: the threshold and Platt fits on validation subjects, applied to others."""

from __future__ import annotations

import numpy as np
import pytest

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.training.calibration import (
    apply_calibration,
    balanced_accuracy,
    fit_calibration,
    fit_logistic,
    fit_threshold,
    subject_scores,
)


def test_separable_subjects_below_one_half_get_the_midpoint_of_the_gap():
    # the whole-brain case of docs/results.md: ranked perfectly, every subject under 0.5
    y = np.array([0, 0, 1, 1])
    p = np.array([0.31, 0.34, 0.45, 0.47])
    fit = fit_threshold(y, p)
    assert fit["threshold"] == pytest.approx((0.34 + 0.45) / 2)
    assert fit["balanced_accuracy"] == 1.0 and fit["balanced_accuracy_default"] == 0.5
    # applied to other subjects of the same kind: every one called correctly
    calls, prob = apply_calibration({"method": "threshold", **fit}, [0.33, 0.32, 0.46, 0.44], [0, 0, 0, 0])
    assert calls.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(prob, [0.33, 0.32, 0.46, 0.44])  # only the cut moves


def test_ties_go_to_the_candidate_nearest_one_half():
    y = np.array([0, 1, 0, 1])
    p = np.array([0.2, 0.3, 0.6, 0.7])  # no perfect cut; 0.25 and 0.65 both give balanced accuracy 0.75
    fit = fit_threshold(y, p)
    assert fit["balanced_accuracy"] == pytest.approx(0.75)
    assert fit["threshold"] == pytest.approx(0.65)  # |0.65 - 0.5| < |0.25 - 0.5|
    assert fit_threshold(y, p, default=0.3)["threshold"] == pytest.approx(0.25)


def test_platt_scaling_stays_finite_on_separable_subjects_and_calls_them():
    y = np.array([0, 0, 0, 1, 1, 1])
    z = np.array([-1.2, -1.0, -0.9, -0.4, -0.3, -0.1])  # mean logits, all below 0
    fit = fit_logistic(y, z)
    assert np.isfinite(fit["a"]) and fit["a"] > 0 and abs(fit["a"]) < 100
    assert fit["balanced_accuracy"] == 1.0
    calls, q = apply_calibration({"method": "logistic", **fit}, np.zeros(6), z)
    assert calls.tolist() == y.tolist()
    # Platt's smoothed targets (0.2 and 0.8 here) keep the fit from saturating, as a plain
    # maximum-likelihood fit of separable subjects would (a -> inf, probabilities 0 and 1)
    assert q.min() > 0.05 and q.max() < 0.95


def test_subject_scores_average_probabilities_and_logits():
    logits = np.array([[0.0, 1.0], [0.0, 3.0], [2.0, 0.0]])
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names, y, p, z = subject_scores(["a", "a", "b"], [1, 1, 0], prob, logits)
    assert names == ["a", "b"] and y.tolist() == [1, 0]
    np.testing.assert_allclose(z, [2.0, -2.0])
    np.testing.assert_allclose(p, [prob[:2, 1].mean(), prob[2, 1]])
    with pytest.raises(InputError, match="two-class"):
        subject_scores(["a"], [0], np.ones((1, 3)) / 3, np.zeros((1, 3)))


def test_bad_fits_raise():
    with pytest.raises(InputError, match="both classes"):
        fit_threshold([1, 1], [0.2, 0.4])
    with pytest.raises(ConfigError, match="threshold, logistic, none"):
        fit_calibration("isotonic", [0, 1], [0.1, 0.9], [0, 1])
    assert fit_calibration("none", [0, 1], [0.1, 0.9], [0, 1]) == {"method": "none"}
    assert balanced_accuracy([0, 0, 1], [0, 1, 1]) == pytest.approx(0.75)
