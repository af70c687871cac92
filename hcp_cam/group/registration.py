"""Register a subject's FA to a template with SimpleITK, and keep the transform on disk.

Stages (SimpleITK's ``ImageRegistrationMethod``, template fixed, subject moving): a centre-of-mass
initialisation (``CenteredTransformInitializer``, MOMENTS), a rigid (Euler) then an affine stage,
each multi-resolution, with correlation (FA against FA) or Mattes mutual information, and on request a
deformable refinement: a cubic B-spline (LBFGSB) or diffeomorphic demons (a displacement field).

The transform maps template points to subject points (what ``sitk.Resample`` takes to bring the
subject onto the template's grid). It is written once per subject to ``<dir>/<key>_affine.tfm``
(plus ``<key>_bspline.tfm`` or ``<key>_field.nii.gz``) with ``<key>.json`` recording the template,
the FA and the settings it was made from; :func:`cached_registration` reuses it while they match.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hcp_cam.errors import ConfigError
from hcp_cam.group.images import affine_from_sitk_transform
from hcp_cam.io import atomic_path, write_json_atomic

__all__ = [
    "METRICS",
    "DEFORMABLE",
    "RegistrationSettings",
    "Registration",
    "register",
    "save_registration",
    "load_registration",
    "cached_registration",
]

logger = logging.getLogger(__name__)

METRICS = ("correlation", "mattes")
DEFORMABLE = ("bspline", "demons")


@dataclass(frozen=True)
class RegistrationSettings:
    """How :func:`register` aligns an FA map to a template.

    Attributes:
        metric: ``"correlation"`` (FA to FA: same contrast) or ``"mattes"`` (mutual information,
            for a template of another contrast or scaling).
        deformable: ``None`` (affine only), ``"bspline"`` or ``"demons"``.
        shrink_factors: the resolution pyramid, coarse to fine; ``None`` picks from (4, 2, 1) the
            factors that leave at least 16 voxels along every axis.
        iterations: optimiser iterations per level (rigid and affine stages).
        sampling: share of the template's voxels the metric samples (1: all, deterministic;
            below 1: random with ``seed``, for large images).
        seed: the sampling seed.
        bspline_spacing_mm: control-point spacing of the B-spline grid.
        bspline_iterations: LBFGSB iterations per level of the B-spline stage.
        demons_iterations: iterations of the demons stage.
        demons_sigma_mm: Gaussian smoothing of the demons displacement field.
    """

    metric: str = "correlation"
    deformable: str | None = None
    shrink_factors: tuple[int, ...] | None = None
    iterations: int = 200
    sampling: float = 1.0
    seed: int = 0
    bspline_spacing_mm: float = 20.0
    bspline_iterations: int = 30
    demons_iterations: int = 50
    demons_sigma_mm: float = 3.0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"registration metric must be one of {METRICS}, got {self.metric!r}")
        if self.deformable not in (None, *DEFORMABLE):
            raise ConfigError(f"deformable must be none or one of {DEFORMABLE}, got {self.deformable!r}")
        if not 0 < float(self.sampling) <= 1:
            raise ConfigError(f"registration sampling must be in (0, 1], got {self.sampling}")
        if int(self.iterations) < 1:
            raise ConfigError(f"registration iterations must be >= 1, got {self.iterations}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shrink_factors"] = None if self.shrink_factors is None else list(self.shrink_factors)
        return d


@dataclass
class Registration:
    """The result of :func:`register`: template points -> subject points.

    Attributes:
        affine: the linear part (``sitk.AffineTransform``).
        deformable: the B-spline or displacement-field refinement, applied before ``affine``
            (template grid), or ``None``.
        metric_value: the final metric (lower is better; correlation is negative).
        info: what was done (stages, iterations, stop conditions).
    """

    affine: sitk.Transform
    deformable: sitk.Transform | None = None
    metric_value: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def transform(self) -> sitk.Transform:
        """The whole mapping, for ``sitk.Resample`` with the template as reference."""
        if self.deformable is None:
            return self.affine
        composite = sitk.CompositeTransform(3)
        composite.AddTransform(self.affine)  # the last added is applied first: deformable, then affine
        composite.AddTransform(self.deformable)
        return composite

    @property
    def matrix_ras(self) -> np.ndarray:
        """``(4, 4)`` RAS-mm matrix of the affine part."""
        return affine_from_sitk_transform(self.affine)


def _levels(size: tuple[int, ...], shrink: tuple[int, ...] | None) -> tuple[list[int], list[float]]:
    if shrink is None:
        shrink = tuple(f for f in (4, 2, 1) if min(size) / f >= 16) or (1,)
    factors = [int(f) for f in shrink]
    return factors, [max(0.0, f / 2.0) if f > 1 else 0.0 for f in factors]


def _method(settings: RegistrationSettings, fixed: sitk.Image) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    if settings.metric == "correlation":
        reg.SetMetricAsCorrelation()
    else:
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    if settings.sampling < 1:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(float(settings.sampling), int(settings.seed))
    else:
        reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    factors, sigmas = _levels(fixed.GetSize(), settings.shrink_factors)
    reg.SetShrinkFactorsPerLevel(factors)
    reg.SetSmoothingSigmasPerLevel(sigmas)  # voxels of each level
    return reg


def _linear_stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    initial: sitk.Transform,
    settings: RegistrationSettings,
    line_search: bool = False,
    finest_levels: int | None = None,
    learning_rate: float = 2.0,
) -> tuple[sitk.Transform, sitk.ImageRegistrationMethod]:
    reg = _method(settings, fixed)
    if finest_levels is not None:
        factors, sigmas = _levels(fixed.GetSize(), settings.shrink_factors)
        reg.SetShrinkFactorsPerLevel(factors[-finest_levels:])
        reg.SetSmoothingSigmasPerLevel(sigmas[-finest_levels:])
    if line_search:  # every step goes downhill (and costs ~10 metric evaluations)
        reg.SetOptimizerAsGradientDescentLineSearch(
            learningRate=1.0,
            numberOfIterations=int(settings.iterations),
            convergenceMinimumValue=1e-6,
            convergenceWindowSize=10,
            maximumStepSizeInPhysicalUnits=1.0,
        )
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=float(learning_rate),
            minStep=1e-4,
            numberOfIterations=int(settings.iterations),
            relaxationFactor=0.6,
            gradientMagnitudeTolerance=1e-8,
        )
    reg.SetOptimizerScalesFromPhysicalShift()  # steps in mm for translation and rotation alike
    reg.SetInitialTransform(initial, inPlace=False)
    return reg.Execute(fixed, moving), reg


def _single(transform: sitk.Transform) -> sitk.Transform:
    """The one transform ``Execute`` optimised (it returns a composite holding it when not in place)."""
    tx = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if isinstance(tx, sitk.CompositeTransform) and tx.GetNumberOfTransforms() == 1:
        tx = tx.GetNthTransform(0)
        tx = tx.Downcast() if hasattr(tx, "Downcast") else tx
    return tx


def register(
    fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings | None = None
) -> Registration:
    """Align ``moving`` (a subject's FA) to ``fixed`` (the template).

    Args:
        fixed: the template, float32 (see :func:`hcp_cam.group.images.to_sitk`).
        moving: the subject's FA, float32, any grid.
        settings: metric, pyramid, deformable stage (default :class:`RegistrationSettings`).

    Returns:
        a :class:`Registration` whose ``transform`` maps template points (LPS mm) to subject points.
    """
    settings = settings or RegistrationSettings()
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    init = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    rigid, reg = _linear_stage(fixed, moving, init, settings)
    info: dict[str, Any] = {
        "rigid": {"iterations": reg.GetOptimizerIteration(), "metric": reg.GetMetricValue()}
    }
    rigid = _single(rigid)
    start = sitk.AffineTransform(3)
    start.SetCenter(rigid.GetCenter())
    start.SetMatrix(rigid.GetMatrix())
    start.SetTranslation(rigid.GetTranslation())
    # the affine stage refines on the two finest levels; a fixed-step descent can let the scale
    # parameters shrink the template onto the middle of the brain (seen on 24-voxel grids), so a
    # result worse than the rigid start is redone with a line search (each step downhill, ~5x the cost)
    for line_search in (False, True):
        affine, reg = _linear_stage(
            fixed, moving, start, settings, line_search=line_search, finest_levels=2, learning_rate=1.0
        )
        affine = _single(affine)
        metric = float(reg.GetMetricValue())
        info["affine"] = {
            "iterations": reg.GetOptimizerIteration(),
            "metric": metric,
            "stop": reg.GetOptimizerStopConditionDescription(),
            "line_search": line_search,
        }
        if metric <= info["rigid"]["metric"]:
            break
    if not metric <= info["rigid"]["metric"]:  # worse than where it started: keep the rigid result
        logger.warning("affine stage ended worse than the rigid one (%.4f > %.4f); kept the rigid transform",
                       metric, info["rigid"]["metric"])  # fmt: skip
        affine, metric = start, float(info["rigid"]["metric"])
        info["affine"]["kept"] = "rigid"
    deformable = None
    if settings.deformable == "bspline":
        deformable, metric = _bspline_stage(fixed, moving, affine, settings)
        info["bspline"] = {"metric": metric, "spacing_mm": settings.bspline_spacing_mm}
    elif settings.deformable == "demons":
        deformable = _demons_stage(fixed, moving, affine, settings)
        info["demons"] = {"iterations": settings.demons_iterations, "sigma_mm": settings.demons_sigma_mm}
    return Registration(affine=affine, deformable=deformable, metric_value=metric, info=info)


def _bspline_stage(
    fixed: sitk.Image, moving: sitk.Image, affine: sitk.Transform, settings: RegistrationSettings
) -> tuple[sitk.Transform, float]:
    extent = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
    mesh = [max(1, int(round(e / settings.bspline_spacing_mm))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = _method(settings, fixed)
    factors, sigmas = _levels(fixed.GetSize(), settings.shrink_factors)
    reg.SetShrinkFactorsPerLevel(factors[-2:])  # the control grid is coarse already: the finer levels
    reg.SetSmoothingSigmasPerLevel(sigmas[-2:])
    # every control point moves the metric of its neighbourhood only: a random fifth of the voxels
    # (seeded) estimates it well and makes the stage ~5x faster
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(min(float(settings.sampling), 0.2), int(settings.seed))
    reg.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5, numberOfIterations=int(settings.bspline_iterations),
        maximumNumberOfCorrections=5,
    )  # fmt: skip
    reg.SetMovingInitialTransform(affine)
    reg.SetInitialTransform(bspline, inPlace=True)
    reg.Execute(fixed, moving)
    return bspline, float(reg.GetMetricValue())


def _demons_stage(
    fixed: sitk.Image, moving: sitk.Image, affine: sitk.Transform, settings: RegistrationSettings
) -> sitk.Transform:
    resampled = sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    demons = sitk.DiffeomorphicDemonsRegistrationFilter()
    demons.SetNumberOfIterations(int(settings.demons_iterations))
    demons.SetSmoothDisplacementField(True)
    spacing = float(min(fixed.GetSpacing()))
    demons.SetStandardDeviations(float(settings.demons_sigma_mm) / spacing)  # in voxels
    field_img = demons.Execute(fixed, resampled)
    return sitk.DisplacementFieldTransform(sitk.Cast(field_img, sitk.sitkVectorFloat64))


def _paths(directory: Path, key: str) -> dict[str, Path]:
    return {
        "affine": directory / f"{key}_affine.tfm",
        "bspline": directory / f"{key}_bspline.tfm",
        "demons": directory / f"{key}_field.nii.gz",
        "record": directory / f"{key}.json",
    }


def save_registration(
    registration: Registration, directory: str | os.PathLike, key: str, record: dict[str, Any]
) -> Path:
    """Write ``<key>_affine.tfm`` (+ the deformable part) and ``<key>.json``, each atomically.

    The JSON is written last: a transform without its record is never reused.
    """
    paths = _paths(Path(directory), key)
    with atomic_path(paths["affine"]) as tmp:
        sitk.WriteTransform(registration.affine, str(tmp))
    files = [paths["affine"].name]
    if isinstance(registration.deformable, sitk.DisplacementFieldTransform):
        with atomic_path(paths["demons"]) as tmp:
            sitk.WriteImage(registration.deformable.GetDisplacementField(), str(tmp))
        files.append(paths["demons"].name)
    elif registration.deformable is not None:
        with atomic_path(paths["bspline"]) as tmp:
            sitk.WriteTransform(registration.deformable, str(tmp))
        files.append(paths["bspline"].name)
    full = {
        **record,
        "files": files,
        "metric_value": registration.metric_value,
        "info": registration.info,
        "template_to_subject_ras": registration.matrix_ras.tolist(),
    }
    return write_json_atomic(full, paths["record"])


def load_registration(directory: str | os.PathLike, key: str) -> tuple[Registration, dict[str, Any]] | None:
    """Read what :func:`save_registration` wrote, or ``None`` if it is missing or incomplete."""
    paths = _paths(Path(directory), key)
    if not paths["record"].is_file():
        return None
    try:
        record = json.loads(paths["record"].read_text())
        affine = sitk.ReadTransform(str(paths["affine"]))
        deformable = None
        if paths["bspline"].name in record.get("files", []):
            deformable = sitk.ReadTransform(str(paths["bspline"]))
        elif paths["demons"].name in record.get("files", []):
            field_img = sitk.Cast(sitk.ReadImage(str(paths["demons"])), sitk.sitkVectorFloat64)
            deformable = sitk.DisplacementFieldTransform(field_img)
    except (OSError, RuntimeError, json.JSONDecodeError) as e:
        logger.warning("%s: unreadable cached transform (%s); registering again", paths["record"], e)
        return None
    reg = Registration(
        affine=affine.Downcast() if hasattr(affine, "Downcast") else affine,
        deformable=deformable,
        metric_value=float(record.get("metric_value", float("nan"))),
        info=record.get("info", {}),
    )
    return reg, record


def cached_registration(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: RegistrationSettings,
    directory: str | os.PathLike,
    key: str,
    provenance: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> tuple[Registration, bool]:
    """The registration of ``moving`` to ``fixed``, read from ``directory`` when its record matches.

    Args:
        fixed, moving, settings: see :func:`register`.
        directory: the transform folder (``OUT/transforms``).
        key: the file stem, ``<subject>[_<acquisition>]``.
        provenance: what makes the transform valid (template and FA digests); compared with the
            record together with ``settings``.
        extra: recorded too, not compared (the FA's path, the subject).

    Returns:
        ``(registration, reused)``.
    """
    want = {"settings": settings.to_dict(), **provenance}
    found = load_registration(directory, key)
    if found is not None:
        reg, record = found
        if all(record.get(k) == v for k, v in want.items()):
            return reg, True
        logger.info("%s: the cached transform was made from other inputs or settings; registering again", key)
    reg = register(fixed, moving, settings)
    save_registration(reg, directory, key, {**want, **(extra or {})})
    return reg, False
