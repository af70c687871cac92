"""Two-group permutation test with max-statistic family-wise error control (Nichols & Holmes 2002).

For each voxel (or atlas label) a Welch t statistic of group 1 minus group 0, over the subjects whose
value is known (NaN is missing, per voxel). The group labels are permuted ``n_permutations`` times
(seeded; group sizes kept); each permutation's maximum ``|t|`` over all voxels forms the null
distribution, and a voxel's FWE-corrected p-value is the share of permutations (the observed
labelling counted as one) whose maximum reaches its ``|t|``: two-sided, corrected over every voxel
tested.

Vectorised: with the labellings as a ``(P, n)`` 0/1 matrix ``G`` and the data as ``(n, V)``, the
per-group sums, sums of squares and counts of all permutations are three matrix products
(``G @ X``), done in float64 in chunks of permutations to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from hcp_cam.errors import ConfigError

__all__ = ["PermutationResult", "welch_t", "permutation_test"]


@dataclass
class PermutationResult:
    """What :func:`permutation_test` returns; arrays of shape ``(V,)`` unless said otherwise.

    Attributes:
        t: Welch t of group 1 minus group 0 (0 where either group has fewer than 2 values).
        p_fwe: two-sided FWE-corrected p-value in ``[1 / (P + 1), 1]``.
        difference: mean of group 1 minus mean of group 0 (NaN where a group has no value).
        mean0, mean1: the group means (NaN where a group has no value).
        n0, n1: the number of subjects with a value.
        max_null: ``(P + 1,)`` maximum ``|t|`` of each labelling, the observed one first.
        n_permutations: P.
        seed: the seed of the permutations.
    """

    t: np.ndarray
    p_fwe: np.ndarray
    difference: np.ndarray
    mean0: np.ndarray
    mean1: np.ndarray
    n0: np.ndarray
    n1: np.ndarray
    max_null: np.ndarray
    n_permutations: int
    seed: int


def welch_t(
    s1: np.ndarray, q1: np.ndarray, n1: np.ndarray, s0: np.ndarray, q0: np.ndarray, n0: np.ndarray
) -> np.ndarray:
    """Welch t from per-group sums ``s``, sums of squares ``q`` and counts ``n`` (any broadcastable
    shapes); 0 where a group has fewer than 2 values or both variances are 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        m1, m0 = s1 / n1, s0 / n0
        v1 = np.maximum(q1 - n1 * m1**2, 0.0) / (n1 - 1)
        v0 = np.maximum(q0 - n0 * m0**2, 0.0) / (n0 - 1)
        se = np.sqrt(v1 / n1 + v0 / n0)
        t = (m1 - m0) / se
    ok = (n1 >= 2) & (n0 >= 2) & (se > 0) & np.isfinite(t)
    return np.where(ok, t, 0.0)


def permutation_test(
    data: np.ndarray,
    labels: np.ndarray,
    n_permutations: int = 1000,
    seed: int = 0,
    chunk: int | None = None,
    progress: bool = False,
) -> PermutationResult:
    """Voxelwise (or label-wise) two-group test with max-|t| FWE correction.

    Args:
        data: ``(n, V)`` values of ``n`` subjects at ``V`` voxels; NaN where unknown.
        labels: ``(n,)`` 0/1 group of each subject (1 is the group subtracted from: 1 minus 0).
        n_permutations: random relabellings (>= 1), drawn with ``numpy.random.default_rng(seed)``.
        seed: permutation seed: the same seed gives the same p-values.
        chunk: permutations per matrix product (default: about 32 MB of float64 per product).
        progress: a tqdm bar over the chunks.

    Returns:
        a :class:`PermutationResult`.

    Raises:
        ConfigError: bad shapes, labels other than 0/1, fewer than 2 subjects in a group, or
            ``n_permutations < 1``.
    """
    x = np.asarray(data, dtype=np.float64)
    g = np.asarray(labels).astype(int).ravel()
    if x.ndim != 2 or x.shape[0] != g.size:
        raise ConfigError(f"data must be (n_subjects, n_values) with n_subjects={g.size}, got {x.shape}")
    if not np.isin(g, (0, 1)).all():
        raise ConfigError(f"labels must be 0 or 1, got {sorted(set(g.tolist()))}")
    if min((g == 0).sum(), (g == 1).sum()) < 2:
        raise ConfigError(f"each group needs at least 2 subjects, got {(g == 0).sum()} and {(g == 1).sum()}")
    if int(n_permutations) < 1:
        raise ConfigError(f"n_permutations must be >= 1, got {n_permutations}")
    known = np.isfinite(x)
    # centre each column on its mean: the sums of squares then lose no precision to a large offset
    count = known.sum(0)
    centre = np.where(count > 0, np.where(known, x, 0.0).sum(0) / np.maximum(count, 1), 0.0)
    xc = np.where(known, x - centre, 0.0)
    m = known.astype(np.float64)
    x2 = xc**2
    s_all, q_all, n_all = xc.sum(0), x2.sum(0), m.sum(0)

    rng = np.random.default_rng(seed)
    perms = np.empty((int(n_permutations) + 1, g.size), dtype=np.float64)
    perms[0] = g
    for k in range(1, perms.shape[0]):
        perms[k] = rng.permutation(g)
    if chunk is None:
        chunk = max(1, int(4e6 // max(1, x.shape[1])))
    max_null = np.empty(perms.shape[0])
    t_obs = None
    for start in tqdm(
        range(0, perms.shape[0], chunk), desc="permutations", unit="chunk", disable=not progress
    ):
        gp = perms[start : start + chunk]
        s1, q1, n1 = gp @ xc, gp @ x2, gp @ m
        t = welch_t(s1, q1, n1, s_all - s1, q_all - q1, n_all - n1)
        if start == 0:
            t_obs = t[0].copy()
        max_null[start : start + len(gp)] = np.abs(t).max(axis=1) if t.shape[1] else 0.0
    assert t_obs is not None
    ordered = np.sort(max_null)
    reach = perms.shape[0] - np.searchsorted(ordered, np.abs(t_obs) - 1e-12, side="left")
    p = reach / perms.shape[0]
    n1_obs, n0_obs = m[g == 1].sum(0), m[g == 0].sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean1 = np.where(n1_obs > 0, (xc[g == 1].sum(0)) / n1_obs + centre, np.nan)
        mean0 = np.where(n0_obs > 0, (xc[g == 0].sum(0)) / n0_obs + centre, np.nan)
    return PermutationResult(
        t=t_obs,
        p_fwe=p,
        difference=mean1 - mean0,
        mean0=mean0,
        mean1=mean1,
        n0=n0_obs.astype(int),
        n1=n1_obs.astype(int),
        max_null=max_null,
        n_permutations=int(n_permutations),
        seed=int(seed),
    )
