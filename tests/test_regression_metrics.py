"""Regression metrics of age (numpy) against scipy and hand-computed values, and the age-bias fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hcp_cam.errors import InputError
from hcp_cam.training.regression_metrics import (
    aggregate_regression,
    bias_corrected_metrics,
    constant_regression_warning,
    correct_age_bias,
    fit_age_bias,
    pearson_r,
    regression_metrics,
    subject_and_slice_regression_metrics,
)

AGE = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
PRED = np.array([14.0, 18.0, 33.0, 35.0, 49.0])


def test_metrics_equal_their_definitions_and_scipy():
    m = regression_metrics(AGE, PRED, baseline=28.0)
    err = PRED - AGE
    assert m["mae"] == pytest.approx(np.abs(err).mean()) == pytest.approx(3.0)
    assert m["rmse"] == pytest.approx(np.sqrt((err**2).mean()))
    assert m["pearson_r"] == pytest.approx(stats.pearsonr(AGE, PRED).statistic)
    assert m["r2"] == pytest.approx(1 - (err**2).sum() / ((AGE - AGE.mean()) ** 2).sum())
    assert m["mean_error"] == pytest.approx(err.mean())
    # the baseline predicts the training mean (28) for everyone: |10-28|, |20-28|, ... -> 12.4
    assert m["mean_age_baseline"] == pytest.approx(np.abs(AGE - 28.0).mean()) == pytest.approx(12.4)
    assert m["mae_ratio"] == pytest.approx(3.0 / 12.4)
    assert m["prediction_spread"] == pytest.approx(PRED.std()) and m["n"] == 5


def test_predicting_the_mean_scores_r2_zero_and_ratio_one():
    m = regression_metrics(AGE, np.full(5, AGE.mean()))
    assert m["r2"] == pytest.approx(0.0) and m["mae_ratio"] == pytest.approx(1.0)
    assert np.isnan(m["pearson_r"])  # constant predictions have no correlation
    assert np.isnan(pearson_r([1.0], [2.0]))


def test_subject_level_is_the_mean_of_the_slices():
    subjects = ["a", "a", "b", "b", "b", "c"]
    age = [10, 10, 30, 30, 30, 50]
    pred = [12, 16, 20, 30, 40, 44]
    names, y, p, n = aggregate_regression(subjects, age, pred)
    assert names == ["a", "b", "c"] and n.tolist() == [2, 3, 1]
    np.testing.assert_allclose(p, [14, 30, 44])
    np.testing.assert_allclose(y, [10, 30, 50])
    m = subject_and_slice_regression_metrics(subjects, age, pred, baseline=30.0)
    assert m["mae"] == pytest.approx((4 + 0 + 6) / 3) and m["n_subjects"] == 3 and m["n_slices"] == 6
    assert m["slice_mae"] == pytest.approx(np.mean(np.abs(np.subtract(pred, age))))
    assert m["mean_age_baseline"] == pytest.approx((20 + 0 + 20) / 3)
    assert not m["constant_predictions"]
    with pytest.raises(InputError, match="'a' has slices with different ages"):
        aggregate_regression(["a", "a"], [10, 11], [1, 2])


def test_constant_predictions_are_flagged():
    m = subject_and_slice_regression_metrics(["a", "b", "c"], [10, 40, 70], [39.5, 40.0, 40.5])
    assert m["constant_predictions"]
    warning = constant_regression_warning(m)
    assert "about the same age for everyone" in warning and "held-out correlation" in warning
    assert (
        constant_regression_warning(subject_and_slice_regression_metrics(["a", "b"], [10, 40], [12, 41]))
        is None
    )


@pytest.mark.parametrize(
    "age, pred, match",
    [([], [], "empty"), ([1, 2], [1], "expected 2"), ([1, np.nan], [1, 2], "NaN")],
)
def test_bad_input_raises(age, pred, match):
    with pytest.raises(InputError, match=match):
        regression_metrics(age, pred)


def test_age_bias_fit_and_correction_remove_the_trend():
    rng = np.random.default_rng(0)
    age = np.linspace(10, 70, 30)
    # regression to the mean: slope 0.5 around 40, plus noise
    pred = 40 + 0.5 * (age - 40) + rng.normal(0, 1.0, age.size)
    fit = fit_age_bias(age, pred)
    assert fit["slope"] == pytest.approx(0.5, abs=0.05) and fit["intercept"] == pytest.approx(20, abs=2)
    corrected, gap = correct_age_bias(age, pred, fit)
    np.testing.assert_allclose(gap, corrected - age)
    m = bias_corrected_metrics(age, pred, fit)
    assert m["gap_age_r"] < -0.9  # the uncorrected gap falls with age
    assert abs(m["corrected_gap_age_r"]) < 0.05  # the corrected one does not (fitted on the same here)
    assert m["corrected_mae"] < np.abs(pred - age).mean()
    with pytest.raises(InputError, match="different ages"):
        fit_age_bias([30, 30], [20, 25])
