"""Labels permuted across subjects: the training data of the data-randomisation test.

Adebayo et al. (NeurIPS 2018, "Sanity Checks for Saliency Maps") train the same network on labels
that carry no information and ask whether its maps still look like the real ones; maps that do
show the input's structure, not what was learned. :func:`permute_labels` makes such a datalist:
the labels of the training and validation subjects are shuffled among those subjects (seeded),
every acquisition of a subject keeping one label, and the test subjects keep their true labels so
that the permuted network can be scored (it should be at chance) and mapped on the same subjects.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from hcp_cam.errors import ConfigError

__all__ = ["PERMUTED_SPLITS", "permute_labels"]

#: the splits whose labels are shuffled (validation too: checkpoint selection must not see true labels)
PERMUTED_SPLITS = ("training", "validation")

_LABEL_KEYS = ("label", "group", "age")


def permute_labels(
    datalist: dict[str, Any], seed: int, splits: Sequence[str] = PERMUTED_SPLITS
) -> dict[str, Any]:
    """A copy of ``datalist`` whose labels are permuted across the subjects of ``splits``.

    Args:
        datalist: a datalist of :func:`~hcp_cam.data.make_datalist` (entries with ``subject``,
            ``label``, ``group``, ``age``).
        seed: the permutation's seed.
        splits: the splits whose subjects exchange labels (pooled: a training subject may take a
            validation subject's label).

    Returns:
        the new datalist; each subject of ``splits`` carries the ``label``, ``group`` and ``age`` of
        the subject it was matched with, other splits are unchanged, and ``label_permutation``
        records ``seed``, ``splits`` and the share of subjects whose label changed.

    Raises:
        ConfigError: an unknown split, or a subject whose acquisitions carry different labels.
    """
    unknown = [s for s in splits if s not in datalist]
    if unknown:
        raise ConfigError(f"label permutation: unknown split(s) {unknown}")
    out = copy.deepcopy(datalist)
    by_subject: dict[str, dict[str, Any]] = {}
    for s in splits:
        for e in out[s]:
            labels = {k: e.get(k) for k in _LABEL_KEYS}
            seen = by_subject.setdefault(str(e["subject"]), labels)
            if seen["label"] != labels["label"]:
                raise ConfigError(f"subject {e['subject']} has acquisitions with different labels")
    subjects = sorted(by_subject)
    rng = np.random.default_rng(int(seed))
    donors = [subjects[i] for i in rng.permutation(len(subjects))]
    new = {s: by_subject[d] for s, d in zip(subjects, donors, strict=True)}
    for s in splits:
        for e in out[s]:
            e.update(new[str(e["subject"])])
    changed = sum(new[s]["label"] != by_subject[s]["label"] for s in subjects)
    out["label_permutation"] = {
        "seed": int(seed),
        "splits": list(splits),
        "n_subjects": len(subjects),
        "changed_fraction": changed / len(subjects) if subjects else 0.0,
    }
    return out
