"""Names of the tensor maps and of the fit backends, without torch: options are checked before the
heavy imports (``hcp-cam fa`` validates its options, then imports torch while the DWI is read)."""

from __future__ import annotations

from collections.abc import Sequence

from hcp_cam.errors import ConfigError

__all__ = ["TENSOR_METRICS", "BACKENDS", "check_metrics", "check_backend"]

# metric -> (channels, unit)
TENSOR_METRICS: dict[str, tuple[int, str]] = {
    "fa": (1, "1"),
    "md": (1, "mm^2/s"),
    "ad": (1, "mm^2/s"),
    "rd": (1, "mm^2/s"),
    "v1": (3, "unit vector, voxel axes"),
    "color_fa": (3, "|v1| * FA"),
}
BACKENDS = ("torch", "dipy")


def check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """The metric names as a tuple; raises ConfigError on an unknown or empty choice."""
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in TENSOR_METRICS]
    if unknown or not metrics:
        raise ConfigError(f"unknown tensor metrics {unknown}; choose from {sorted(TENSOR_METRICS)}")
    return metrics


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; raises ConfigError otherwise."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown tensor-fit backend {backend!r}; choose from {BACKENDS}")
    return backend
