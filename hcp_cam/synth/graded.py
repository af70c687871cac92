"""A graded age effect for the synthetic data: ages spread over a range, the effect growing with age.

The default synthetic dataset has two groups (young without effect, old with one), which is what a
classifier needs. A regressor of age needs an effect that grows with age: here subject ``i`` gets an
age in ``age_range`` and the radial diffusivity in the effect region is raised by
``effect_size * a * f`` with ``f = (age - low) / (high - low)`` in [0, 1] (``a`` the subject's
amplitude jitter, as for the group effect), so the region's FA falls steadily with age. The same
data serve a classifier of 3 or more age groups (``--groups "young:8-30,middle:31-52,old:53-75"``).

Nothing here is drawn in the default (group) mode, so that mode's files stay byte for byte the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hcp_cam.errors import ConfigError
from hcp_cam.synth.signal import seed_words

__all__ = ["AGE_EFFECTS", "DEFAULT_AGE_RANGE", "check_age_range", "draw_graded_participants", "age_fraction"]

#: ``groups``: young subjects without the effect, old ones with it (the default); ``graded``: the
#: effect grows linearly with age over ``age_range``
AGE_EFFECTS = ("groups", "graded")
#: the ages of the graded mode, in years (the seed study's youngest and oldest subjects)
DEFAULT_AGE_RANGE: tuple[float, float] = (8.0, 75.0)


def check_age_range(age_range: Sequence[float]) -> tuple[float, float]:
    """``(low, high)`` in years with ``0 <= low < high``.

    Raises:
        ConfigError: not two numbers, or not increasing, or negative.
    """
    try:
        low, high = (float(a) for a in age_range)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"age_range must be two ages in years (low, high), got {age_range!r}") from e
    if not 0.0 <= low < high:
        raise ConfigError(f"age_range must satisfy 0 <= low < high, got {low:g}-{high:g}")
    return low, high


def draw_graded_participants(
    n_subjects: int, seed: int | Sequence[int] = 0, age_range: Sequence[float] = DEFAULT_AGE_RANGE
) -> pd.DataFrame:
    """Subject ids and ages spread evenly over ``age_range``, deterministic from the seed.

    The ids are those of :func:`hcp_cam.synth.dataset.draw_participants` for the same seed. Ages are
    stratified: subject ``k`` of a random order draws its age uniformly in the ``k``-th of
    ``n_subjects`` equal parts of the range, then it is rounded to whole years, so that even a small
    dataset covers the range without clumps.

    Args:
        n_subjects: number of subjects (>= 1).
        seed: seed words.
        age_range: ``(low, high)`` in years.

    Returns:
        DataFrame sorted by id with ``subject`` (6-digit strings), ``age`` (int years in the range)
        and ``group`` (empty: the participants table of the graded mode has no group column; groups
        come from the ages and the ``groups`` rule of the reader).
    """
    if n_subjects < 1:
        raise ConfigError(f"need at least 1 subject, got {n_subjects}")
    low, high = check_age_range(age_range)
    rng = np.random.default_rng([*seed_words(seed), 505])
    ids = np.sort(rng.choice(900_000, size=n_subjects, replace=False) + 100_000)
    ages_rng = np.random.default_rng([*seed_words(seed), 506])
    parts = (np.arange(n_subjects) + ages_rng.uniform(size=n_subjects)) / n_subjects
    ages = np.clip(np.rint(low + (high - low) * ages_rng.permutation(parts)), low, high).astype(int)
    return pd.DataFrame({"subject": [f"{i:06d}" for i in ids], "age": ages, "group": [""] * n_subjects})


def age_fraction(age: float, age_range: Sequence[float] = DEFAULT_AGE_RANGE) -> float:
    """The subject's place in the age range, ``(age - low) / (high - low)`` clipped to [0, 1]."""
    low, high = check_age_range(age_range)
    return float(np.clip((float(age) - low) / (high - low), 0.0, 1.0))
