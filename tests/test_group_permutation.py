"""Max-statistic permutation test: the t statistic, the FWE p-values, missing data, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hcp_cam.errors import ConfigError
from hcp_cam.group import permutation_test


def _welch(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    out = []
    for v in range(x.shape[1]):
        a, b = x[g == 1, v], x[g == 0, v]
        out.append(stats.ttest_ind(a[np.isfinite(a)], b[np.isfinite(b)], equal_var=False).statistic)
    return np.asarray(out)


def test_t_is_welchs_and_p_is_the_share_of_permutation_maxima():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 30)) + np.linspace(0, 3, 30)  # columns with very different offsets
    g = np.r_[np.zeros(9, int), np.ones(11, int)]
    x[g == 1, :5] += 1.5
    x[rng.random(x.shape) < 0.1] = np.nan
    res = permutation_test(x, g, n_permutations=49, seed=4)
    np.testing.assert_allclose(res.t, _welch(x, g), atol=1e-10)
    # the same labellings by hand: the observed one, then the seeded permutations
    prng = np.random.default_rng(4)
    labellings = [g] + [prng.permutation(g) for _ in range(49)]
    maxima = np.array([np.abs(_welch(x, lab)).max() for lab in labellings])
    np.testing.assert_allclose(res.max_null, maxima, atol=1e-10)
    expected = np.array([(maxima >= abs(t) - 1e-12).mean() for t in res.t])
    np.testing.assert_array_equal(res.p_fwe, expected)
    assert res.p_fwe.min() >= 1 / 50
    np.testing.assert_allclose(
        res.difference, np.nanmean(x[g == 1], 0) - np.nanmean(x[g == 0], 0), atol=1e-12
    )
    np.testing.assert_array_equal(res.n1, np.isfinite(x[g == 1]).sum(0))


def test_a_planted_effect_is_found_and_the_null_controls_the_family_wise_error():
    rng = np.random.default_rng(1)
    g = np.r_[np.zeros(15, int), np.ones(15, int)]
    hits, false = 0, 0
    for rep in range(20):
        x = rng.standard_normal((30, 400))
        x[g == 1, :10] += 2.5
        res = permutation_test(x, g, n_permutations=199, seed=rep)
        hits += int((res.p_fwe[:10] < 0.05).sum())
        false += int((res.p_fwe[10:] < 0.05).any())
    assert hits >= 0.8 * 200  # most planted voxels found
    assert false <= 4  # about 5% of the 20 null families have any false positive (binomial 95%: <= 3-4)


def test_same_seed_same_p_values_and_chunks_do_not_matter():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 300))
    g = np.r_[np.zeros(6, int), np.ones(6, int)]
    a = permutation_test(x, g, 50, seed=7)
    b = permutation_test(x, g, 50, seed=7, chunk=7)
    c = permutation_test(x, g, 50, seed=8)
    np.testing.assert_array_equal(a.p_fwe, b.p_fwe)
    np.testing.assert_allclose(a.max_null, b.max_null)
    assert not np.array_equal(a.max_null, c.max_null)


def test_columns_without_two_values_per_group_get_t_zero():
    x = np.arange(16, dtype=float).reshape(8, 2)
    g = np.r_[np.zeros(4, int), np.ones(4, int)]
    x[g == 1, 1] = np.nan
    x[4, 1] = 3.0  # one value in group 1
    res = permutation_test(x, g, 10, seed=0)
    assert res.t[1] == 0.0 and res.p_fwe[1] == 1.0 and res.n1[1] == 1


@pytest.mark.parametrize(
    "x, g, n, match",
    [
        (np.zeros((4, 3)), np.array([0, 0, 1, 1, 1]), 10, "n_subjects"),
        (np.zeros((4, 3)), np.array([0, 0, 1, 2]), 10, "0 or 1"),
        (np.zeros((4, 3)), np.array([0, 1, 1, 1]), 10, "at least 2"),
        (np.zeros((4, 3)), np.array([0, 0, 1, 1]), 0, "n_permutations"),
    ],
)
def test_bad_input(x, g, n, match):
    with pytest.raises(ConfigError, match=match):
        permutation_test(x, g, n)
