"""The data a bundle run trains on: dataset folder -> subject-level split -> cached FA -> items.

``prepare_data`` does it once per run; its ``items(split)`` are what MONAI ``Dataset`` objects in
the bundle configs take. Slices (``spatial_dims=2``) or whole FA volumes (``spatial_dims=3``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.data import MetaTensor
from tqdm import tqdm

from hcp_cam.data import make_datalist, write_datalist
from hcp_cam.data.fa_sources import acquisition_maps, entry_acquisition
from hcp_cam.errors import ConfigError
from hcp_cam.fa_volume import load_fa_with_mask

if TYPE_CHECKING:
    from hcp_cam.transforms.preprocessing import PreprocessingParams

__all__ = [
    "DEMO",
    "resolve_dataset_dir",
    "prepare_data",
    "PreparedData",
    "build_transforms",
    "train_transform",
    "eval_transform",
    "default_roi_dir",
]

logger = logging.getLogger(__name__)

DEMO = "demo"
# bumped whenever the synthetic generator's defaults change, so a cached demo dataset is remade
DEMO_VERSION = 3
SPLITS = ("training", "validation", "test")


def resolve_dataset_dir(
    dataset_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    demo_subjects: int = 16,
    demo_seed: int = 0,
    demo_age_effect: str = "groups",
) -> Path:
    """Return the dataset folder to use; ``"demo"`` makes the synthetic dataset once in ``cache_dir``
    (``demo_age_effect="graded"``: ages spread over 8-75 y with an effect growing with age, for
    regression and 3+ groups; :mod:`hcp_cam.synth.graded`).

    An explicit folder that does not exist is an error: never a silent fall-back to the demo data.
    (Its layout and participants table are checked by :func:`hcp_cam.data.make_datalist`.)
    """
    if str(dataset_dir) == DEMO:
        from hcp_cam.synth.graded import AGE_EFFECTS

        if demo_age_effect not in AGE_EFFECTS:
            raise ConfigError(
                f"demo_age_effect must be one of {', '.join(AGE_EFFECTS)}; got {demo_age_effect!r}"
            )
        kind = "" if demo_age_effect == "groups" else f"_{demo_age_effect}"
        target = Path(cache_dir) / f"demo{DEMO_VERSION}{kind}_n{demo_subjects}_seed{demo_seed}"
        if not (target / "participants.csv").is_file():
            _generate_demo(target, demo_subjects, demo_seed, demo_age_effect)
        return target
    path = Path(dataset_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"dataset_dir {str(path)!r} does not exist (use --dataset_dir demo for the synthetic data)"
        )
    return path


def _generate_demo(target: Path, n_subjects: int, seed: int, age_effect: str = "groups") -> None:
    from hcp_cam.synth import generate_dataset

    logger.info("generating the synthetic demo dataset (%d subjects) in %s", n_subjects, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # generate beside the target and rename, so an interrupted run never leaves half a dataset
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        graded = {} if age_effect == "groups" else {"age_effect": age_effect}
        generate_dataset(tmp / "data", n_subjects=n_subjects, seed=seed, **graded)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "data", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class PreparedData:
    """A run's split, with the FA of every acquisition computed (or found in the cache).

    Attributes:
        dataset_dir: the dataset folder.
        datalist: the MONAI datalist (paths relative to ``dataset_dir``), with ``labels``.
        entries: per split, the datalist entries plus absolute ``fa`` and ``mask`` paths.
        spatial_dims: 2 for slices, 3 for volumes.
        slices_per_axis, slice_selection: the 2.5D selection (see ``hcp_cam.transforms.Slices25Dd``).
        task: ``classification`` (``label`` is the group index) or ``regression`` (``label`` is the
            age in target units, :attr:`target`; ``age`` the years).
        target: the regression target's :class:`~hcp_cam.training.tasks.TargetScale` (``None`` for
            classification).
    """

    dataset_dir: Path
    datalist: dict
    entries: dict[str, list[dict]]
    spatial_dims: int = 2
    slices_per_axis: int = 16
    slice_selection: str = "centre"
    task: str = "classification"
    target: Any = None
    _items: dict[str, list[dict]] = field(default_factory=dict, repr=False)

    @property
    def labels(self) -> list[str]:
        return list(self.datalist["labels"])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def items(self, split: str) -> list[dict]:
        """The samples of one split: slice dicts (``image`` ``(1, H, W)``) or volume dicts
        (``image`` ``(1, X, Y, Z)``), each with ``label``, ``subject``, ``acquisition``."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; expected one of {SPLITS}")
        if split not in self._items:
            self._items[split] = self._load(self.entries[split])
        return self._items[split]

    def _load(self, entries: Sequence[dict]) -> list[dict]:
        from hcp_cam.transforms import Slices25Dd

        slicer = Slices25Dd(
            keys="image", mask_key="mask", selection=self.slice_selection, k=self.slices_per_axis
        )
        out: list[dict] = []
        for e in entries:
            # without a brain mask (unprocessed layout) the brain is FA > 0: the fit left the background at 0
            vol = load_fa_with_mask(e["fa"], e.get("mask_abs") or None)
            fa = torch.from_numpy(vol.fa)[None]
            mask = torch.from_numpy(vol.mask)[None].to(torch.uint8)
            item = {
                "image": MetaTensor(fa, affine=torch.as_tensor(vol.affine)),
                "mask": MetaTensor(mask, affine=torch.as_tensor(vol.affine)),
                "label": int(e["label"]) if self.target is None else float(self.target.to_target(e["age"])),
                "subject": str(e["subject"]),
                "acquisition": str(e["acquisition"]),
            }
            if self.spatial_dims == 3:
                out.append(item)
            else:
                out.extend(slicer(item))
        return out


def prepare_data(
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    spatial_dims: int = 2,
    slices_per_axis: int = 16,
    slice_selection: str = "centre",
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    fold: int | None = None,
    num_folds: int | None = None,
    groups: str | None = None,
    fa_backend: str = "torch",
    demo_subjects: int = 16,
    num_classes: int | None = None,
    task: str = "classification",
    standardise_target: bool = True,
    demo_age_effect: str = "groups",
    dataset_layout: str = "auto",
    participants_file: str | os.PathLike | None = None,
    label_permutation_seed: int | None = None,
) -> PreparedData:
    """Split by subject, write ``output_dir/datalist.json``, and compute FA once per acquisition.

    FA maps are cached in ``cache_dir/fa/<dataset key>/<subject>/<acquisition>_fa.nii.gz`` and
    reused across epochs and runs; brain masks computed for raw BIDS lie beside them
    (``<acquisition>_mask.nii.gz``), pybids' index of a BIDS dataset in ``cache_dir/bids-index``.
    Given FA maps (``dataset_layout`` ``fa``) are used as they are. ``task="regression"`` splits
    every subject with an age (:func:`hcp_cam.data.ages.make_regression_datalist`; ``groups`` and
    ``num_classes`` are then unused) and scales the target by the training subjects' ages
    (``standardise_target``).

    Args:
        dataset_layout: one of :data:`hcp_cam.data.layouts.DATASET_LAYOUTS` (``auto`` detects it).
        participants_file: the participants table when it is not in ``dataset_dir`` (QSIPrep).
        label_permutation_seed: an int shuffles the labels of the training and validation subjects
            after the split (:func:`hcp_cam.data.permutation.permute_labels`): the network of the
            data-randomisation test; ``None``: the true labels.
    """
    from hcp_cam.training.tasks import check_task

    task = check_task(task)
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 (slices) or 3 (volumes), got {spatial_dims}")
    # absolute: the FA paths go into cam/summary.csv, read later from other folders (report, group)
    cache_dir = Path(cache_dir).absolute()
    if isinstance(groups, str) and groups.strip().lower() in ("", "null", "none"):
        groups = None  # `--groups null` on the command line
    root = resolve_dataset_dir(
        dataset_dir, cache_dir, demo_subjects=demo_subjects, demo_seed=seed, demo_age_effect=demo_age_effect
    )
    folds = None if not num_folds or int(num_folds) <= 1 else int(num_folds)
    split = dict(
        participants=None if participants_file in (None, "", "null", "None") else participants_file,
        layout=dataset_layout,
        index_dir=Path(cache_dir) / "bids-index",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        num_folds=folds,
        fold=None if folds is None else int(fold or 0),
    )
    if task == "regression":
        return _prepare_regression(
            root, output_dir, cache_dir, spatial_dims, slices_per_axis, slice_selection, fa_backend,
            standardise_target, **split,
        )  # fmt: skip
    datalist = make_datalist(root, groups=groups, **split)
    if num_classes is not None and len(datalist["labels"]) != int(num_classes):
        raise ConfigError(
            f"the age groups {datalist['labels']} make {len(datalist['labels'])} classes but num_classes is "
            f"{num_classes}; set --num_classes {len(datalist['labels'])}"
        )
    if label_permutation_seed is not None:
        from hcp_cam.data.permutation import permute_labels

        datalist = permute_labels(datalist, int(label_permutation_seed))
        logger.warning(
            "labels permuted across the training and validation subjects (seed %s): a data-randomisation run",
            label_permutation_seed,
        )
    write_datalist(datalist, Path(output_dir) / "datalist.json")
    entries = _fa_entries(root, datalist, cache_dir, fa_backend)
    return PreparedData(root, datalist, entries, spatial_dims, int(slices_per_axis), slice_selection)


def _fa_entries(
    root: Path, datalist: dict, cache_dir: str | os.PathLike, fa_backend: str
) -> dict[str, list[dict]]:
    """The datalist's entries per split with the absolute ``fa`` (computed once, cached) and ``mask_abs``."""
    fa_dir = Path(cache_dir) / "fa" / _dataset_key(root)
    todo = [(s, e) for s in SPLITS for e in datalist[s]]
    entries: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for split, e in tqdm(todo, desc="FA maps", unit="acq", disable=None):
        fa_path, mask, _ = acquisition_maps(entry_acquisition(root, e), fa_dir, backend=fa_backend)
        entries[split].append({**e, "fa": str(fa_path), "mask_abs": None if mask is None else str(mask)})
    return entries


def _prepare_regression(
    root: Path,
    output_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    spatial_dims: int,
    slices_per_axis: int,
    slice_selection: str,
    fa_backend: str,
    standardise_target: bool,
    **split: Any,
) -> PreparedData:
    """:func:`prepare_data` for ``task="regression"``: the datalist of ages and the target scale
    (``split``: :func:`~hcp_cam.data.ages.make_regression_datalist`'s keywords)."""
    from hcp_cam.data.ages import make_regression_datalist
    from hcp_cam.training.run_setup import flag
    from hcp_cam.training.tasks import target_scale

    datalist = make_regression_datalist(root, **split)
    train_ages = {e["subject"]: e["age"] for e in datalist["training"]}.values()
    scale = target_scale(train_ages, standardise=bool(flag(standardise_target, "target_standardise")))
    datalist["target_scale"] = scale.as_dict()
    write_datalist(datalist, Path(output_dir) / "datalist.json")
    entries = _fa_entries(root, datalist, cache_dir, fa_backend)
    return PreparedData(
        root,
        datalist,
        entries,
        spatial_dims,
        int(slices_per_axis),
        slice_selection,
        task="regression",
        target=scale,
    )


def _dataset_key(root: Path) -> str:
    """A cache folder name that differs between datasets of the same name in different places."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    return f"{root.name}-{digest}"


def build_transforms(spatial_dims: int = 2, params: PreprocessingParams | int | None = None, **changes: Any):
    """The ``(train, eval)`` chains of the bundle: slices (``spatial_dims=2``,
    :func:`~hcp_cam.transforms.augment.build_slice_transforms`) or whole FA volumes (``spatial_dims=3``,
    :func:`~hcp_cam.transforms.augment.build_volume_transforms`), both from one
    :class:`~hcp_cam.transforms.preprocessing.PreprocessingParams`.

    Args:
        spatial_dims: 2 or 3.
        params: the settings, an int image size, or ``None`` for the defaults.
        changes: fields of ``params`` to replace (``image_size=``, ``noise_std=``, ...), and the
            builders' ``keys`` / ``mask_key``.

    Raises:
        ConfigError: ``spatial_dims`` not 2 or 3, or a setting the builders refuse.
    """
    from hcp_cam.transforms import build_slice_transforms, build_volume_transforms

    if spatial_dims == 2:
        return build_slice_transforms(params, **changes)
    if spatial_dims == 3:
        return build_volume_transforms(params, **changes)
    raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def train_transform(spatial_dims: int = 2, params: PreprocessingParams | int | None = None, **changes: Any):
    """The training chain of :func:`build_transforms` (what the bundle's ``train#preprocessing`` is)."""
    return build_transforms(spatial_dims, params, **changes)[0]


def eval_transform(spatial_dims: int = 2, params: PreprocessingParams | int | None = None, **changes: Any):
    """The evaluation chain of :func:`build_transforms` (deterministic, invertible for CAM; the bundle's
    ``validate#preprocessing``, also used for testing and CAM)."""
    return build_transforms(spatial_dims, params, **changes)[1]


def default_roi_dir(dataset_dir: str | os.PathLike) -> str | None:
    """Ground-truth effect regions (``<subject>_roi.nii.gz``) when the dataset has them: the
    synthetic generator writes them to ``derivatives/ground_truth`` (for its QSIPrep-like data,
    ``derivatives/qsiprep``, the sibling ``derivatives/ground_truth``); real data has none."""
    root = Path(dataset_dir)
    candidates = [root / "derivatives" / "ground_truth"]
    if root.parent.name == "derivatives":  # <bids>/derivatives/qsiprep: its sibling
        candidates.append(root.parent / "ground_truth")
    return next((str(d) for d in candidates if d.is_dir()), None)
