"""ROAD's noisy linear imputation in 3D: removed voxels stay within the range of their neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from hcp_cam.cam.imputation import neighbour_weights, noisy_linear_impute

SHAPE = (20, 22, 18)


def _brain_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid brain with a smooth FA pattern and noise; 0 outside."""
    rng = np.random.default_rng(seed)
    g = np.indices(SHAPE).astype(float)
    c = (np.array(SHAPE, dtype=float)[:, None, None, None] - 1) / 2
    brain = (((g - c) / (c * 0.9)) ** 2).sum(0) < 1
    fa = 0.35 + 0.15 * np.sin(g[0] / 3.0) * np.cos(g[1] / 4.0) + 0.02 * rng.standard_normal(SHAPE)
    return np.where(brain, fa, 0.0).astype(np.float32), brain


def _neighbour_values(vol: np.ndarray, brain: np.ndarray, voxel: tuple[int, int, int]):
    vals, weights = [], []
    for offset, w in neighbour_weights():
        nb = tuple(int(v + o) for v, o in zip(voxel, offset, strict=True))
        if all(0 <= n < s for n, s in zip(nb, vol.shape, strict=True)) and brain[nb]:
            vals.append(float(vol[nb]))
            weights.append(w)
    return np.asarray(vals), np.asarray(weights)


def test_weights_are_inverse_squared_distance_and_sum_to_one():
    w = dict(neighbour_weights())
    assert len(w) == 26
    assert sum(w.values()) == pytest.approx(1.0)
    # ROAD's 2D rule (face 1/6, diagonal 1/12: 1/d^2) in 3D: face : edge : corner = 1 : 1/2 : 1/3
    assert w[(1, 0, 0)] / w[(1, 1, 0)] == pytest.approx(2.0)
    assert w[(1, 0, 0)] / w[(1, 1, 1)] == pytest.approx(3.0)
    # anisotropic voxels: the neighbour across the long side weighs less
    wa = dict(neighbour_weights((1.0, 1.0, 2.0)))
    assert wa[(0, 0, 1)] < wa[(1, 0, 0)]


def test_without_noise_each_removed_voxel_is_the_weighted_mean_of_its_brain_neighbours():
    vol, brain = _brain_volume()
    remove = np.zeros(SHAPE, bool)
    remove[6:12, 8:14, 6:11] = True  # a solid block: most removed voxels have removed neighbours
    remove &= brain
    out = noisy_linear_impute(vol, remove, brain, noise_std=0.0)
    for voxel in map(tuple, np.argwhere(remove)):
        vals, w = _neighbour_values(out, brain, voxel)
        assert out[voxel] == pytest.approx(float((vals * w).sum() / w.sum()), abs=1e-5)
        # hence within the range of its neighbours
        assert vals.min() - 1e-6 <= out[voxel] <= vals.max() + 1e-6
    # the rest of the volume is untouched
    np.testing.assert_array_equal(out[~remove], vol[~remove])


def test_with_noise_removed_voxels_stay_within_the_range_of_the_kept_voxels_around_them():
    vol, brain = _brain_volume()
    rng = np.random.default_rng(3)
    remove = brain & (rng.random(SHAPE) < 0.3)
    remove[4:10, 5:12, 5:12] = brain[4:10, 5:12, 5:12]  # and one large hole
    out = noisy_linear_impute(vol, remove, brain, noise_std=0.05, rng=1)
    labels, n = ndi.label(remove, structure=np.ones((3, 3, 3), bool))
    rim_of = ndi.binary_dilation  # the kept brain voxels touching a component
    for k in range(1, n + 1):
        comp = labels == k
        rim = rim_of(comp, structure=np.ones((3, 3, 3), bool)) & brain & ~remove
        assert rim.any()
        assert out[comp].min() >= vol[rim].min() - 1e-6
        assert out[comp].max() <= vol[rim].max() + 1e-6
    # in distribution: never the background's 0, and the noise is there (not a flat fill)
    assert (out[remove] > 0).all()
    smooth = noisy_linear_impute(vol, remove, brain, noise_std=0.0)
    assert np.std(out[remove] - smooth[remove]) > 0.01


def test_background_neighbours_do_not_pull_edge_voxels_to_zero():
    vol, brain = _brain_volume()
    edge = brain & ~ndi.binary_erosion(brain)
    out = noisy_linear_impute(vol, edge, brain, noise_std=0.0)
    assert out[edge].min() >= vol[brain & ~edge].min() - 1e-6
    np.testing.assert_array_equal(out[~brain], 0.0)


def test_everything_removed_is_the_brain_mean_plus_noise():
    vol, brain = _brain_volume()
    flat = noisy_linear_impute(vol, brain, brain, noise_std=0.0)
    np.testing.assert_allclose(flat[brain], vol[brain].mean(), rtol=1e-5)
    noisy = noisy_linear_impute(vol, brain, brain, noise_std=0.01, rng=0)
    assert np.std(noisy[brain]) == pytest.approx(0.01, rel=0.1)
    assert noisy[brain].min() >= vol[brain].min() and noisy[brain].max() <= vol[brain].max()


def test_seeded_and_checked():
    vol, brain = _brain_volume()
    remove = brain & (np.random.default_rng(0).random(SHAPE) < 0.1)
    a = noisy_linear_impute(vol, remove, brain, rng=5)
    np.testing.assert_array_equal(a, noisy_linear_impute(vol, remove, brain, rng=5))
    assert not np.array_equal(a, noisy_linear_impute(vol, remove, brain, rng=6))
    np.testing.assert_array_equal(noisy_linear_impute(vol, np.zeros(SHAPE, bool), brain), vol)
    with pytest.raises(ValueError, match="one shape"):
        noisy_linear_impute(vol, remove[:-1], brain)
    with pytest.raises(ValueError, match="noise_std"):
        noisy_linear_impute(vol, remove, brain, noise_std=-1.0)
