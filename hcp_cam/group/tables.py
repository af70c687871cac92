"""The group analysis's tables: per-label values (``regions.csv``) and clusters (``clusters.csv``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from hcp_cam.group.atlas import Atlas
from hcp_cam.group.permutation import permutation_test

__all__ = ["label_means", "region_table", "cluster_table", "CLUSTER_COLUMNS"]

CLUSTER_COLUMNS = [
    "map", "cluster", "sign", "n_voxels", "volume_mm3", "peak_t", "peak_difference", "peak_p_fwe",
    "peak_x_mm", "peak_y_mm", "peak_z_mm", "peak_i", "peak_j", "peak_k", "label", "label_name",
]  # fmt: skip


def label_means(maps: np.ndarray, labels: np.ndarray, values: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each subject's mean over each label's known (finite) voxels.

    Args:
        maps: ``(n, X, Y, Z)`` maps in template space, NaN where unknown.
        labels: ``(X, Y, Z)`` integer atlas on the same grid.
        values: the label values, in the order of the output columns.

    Returns:
        ``(means, known_fraction)``, both ``(n, L)``: the mean (NaN where the subject knows no voxel
        of the label) and the share of the label's voxels the subject knows.
    """
    values = np.asarray(list(values), dtype=np.int64)
    lut = np.full(int(max(labels.max(), values.max(initial=0))) + 1, -1, dtype=np.int64)
    lut[values] = np.arange(len(values))
    col = lut[np.clip(labels, 0, None)].ravel()
    inside = col >= 0
    size = np.bincount(col[inside], minlength=len(values)).astype(np.float64)
    means = np.full((maps.shape[0], len(values)), np.nan)
    known = np.zeros_like(means)
    for s, m in enumerate(maps.reshape(maps.shape[0], -1)):
        ok = inside & np.isfinite(m)
        count = np.bincount(col[ok], minlength=len(values)).astype(np.float64)
        total = np.bincount(col[ok], weights=m[ok].astype(np.float64), minlength=len(values))
        with np.errstate(invalid="ignore", divide="ignore"):
            means[s] = np.where(count > 0, total / count, np.nan)
            known[s] = np.where(size > 0, count / size, 0.0)
    return means, known


def region_table(
    cam: np.ndarray,
    fa: np.ndarray,
    groups: np.ndarray,
    group_names: Sequence[str],
    atlas: Atlas,
    n_permutations: int,
    seed: int,
) -> pd.DataFrame:
    """One row per atlas label, sorted by label.

    Args:
        cam, fa: ``(n, X, Y, Z)`` subject maps in template space (NaN unknown).
        groups: ``(n,)`` index into ``group_names`` of each subject.
        group_names: the groups in the rule's order; the difference is the last minus the first.
        atlas: the atlas on the template grid.
        n_permutations, seed: the label-level permutation test (FWE over labels).

    Returns:
        columns ``label, name, n_voxels, mean_cam_<group>..., difference, t, p_value, rank,
        cam_known_fraction, mean_fa_<group>..., fa_difference, fa_t, fa_p_value``; ``rank`` orders
        the labels by ``difference`` (1 = largest), ``p_value``/``fa_p_value`` are two-sided and
        family-wise corrected over the labels.
    """
    values = list(atlas.names)
    cam_m, cam_known = label_means(cam, atlas.labels, values)
    fa_m, _ = label_means(fa, atlas.labels, values)
    first, last = 0, len(group_names) - 1
    sel = np.isin(groups, (first, last))
    binary = (groups[sel] == last).astype(int)
    cam_test = permutation_test(cam_m[sel], binary, n_permutations, seed)
    fa_test = permutation_test(fa_m[sel], binary, n_permutations, seed)
    table = pd.DataFrame(
        {
            "label": values,
            "name": [atlas.names[v] for v in values],
            "n_voxels": [int((atlas.labels == v).sum()) for v in values],
        }
    )
    for k, g in enumerate(group_names):
        with np.errstate(invalid="ignore"):
            table[f"mean_cam_{g}"] = _nanmean(cam_m[groups == k])
    table["difference"] = cam_test.difference
    table["t"] = cam_test.t
    table["p_value"] = cam_test.p_fwe
    order = np.argsort(-np.nan_to_num(cam_test.difference, nan=-np.inf), kind="stable")
    rank = np.empty(len(values), dtype=int)
    rank[order] = np.arange(1, len(values) + 1)
    table["rank"] = rank
    table["cam_known_fraction"] = cam_known.mean(axis=0)
    for k, g in enumerate(group_names):
        table[f"mean_fa_{g}"] = _nanmean(fa_m[groups == k])
    table["fa_difference"] = fa_test.difference
    table["fa_t"] = fa_test.t
    table["fa_p_value"] = fa_test.p_fwe
    return table


def _nanmean(x: np.ndarray) -> np.ndarray:
    known = np.isfinite(x)
    count = known.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(known, x, 0).sum(0) / count, np.nan)


def cluster_table(
    name: str,
    t: np.ndarray,
    p: np.ndarray,
    difference: np.ndarray,
    affine: np.ndarray,
    alpha: float = 0.05,
    atlas: Atlas | None = None,
) -> pd.DataFrame:
    """Connected clusters (26-neighbourhood) of voxels with FWE p below ``alpha``, per sign of t.

    Args:
        name: the map (``cam`` or ``fa``), the ``map`` column.
        t, p, difference: ``(X, Y, Z)`` maps (NaN where untested).
        affine: the template's RAS affine (peaks in mm).
        alpha: the FWE threshold.
        atlas: names the label at each peak.

    Returns:
        :data:`CLUSTER_COLUMNS`, one row per cluster, largest first (empty when none passes).
    """
    rows = []
    significant = np.isfinite(p) & (p < alpha)
    for sign, sel in (("positive", significant & (t > 0)), ("negative", significant & (t < 0))):
        lab, n = ndimage.label(sel, structure=np.ones((3, 3, 3), dtype=bool))
        for c in range(1, n + 1):
            vox = np.argwhere(lab == c)
            peak = vox[np.argmax(np.abs(t[tuple(vox.T)]))]
            mm = affine[:3, :3] @ peak + affine[:3, 3]
            label, label_name = atlas.name_at(tuple(peak)) if atlas is not None else (None, "")
            rows.append(
                {
                    "map": name, "sign": sign, "n_voxels": len(vox),
                    "volume_mm3": float(len(vox) * abs(np.linalg.det(affine[:3, :3]))),
                    "peak_t": float(t[tuple(peak)]), "peak_difference": float(difference[tuple(peak)]),
                    "peak_p_fwe": float(p[tuple(peak)]), "peak_x_mm": float(mm[0]), "peak_y_mm": float(mm[1]),
                    "peak_z_mm": float(mm[2]), "peak_i": int(peak[0]), "peak_j": int(peak[1]),
                    "peak_k": int(peak[2]), "label": label, "label_name": label_name,
                }
            )  # fmt: skip
    rows.sort(key=lambda r: (-r["n_voxels"], -abs(r["peak_t"])))
    for k, r in enumerate(rows, start=1):
        r["cluster"] = k
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)
