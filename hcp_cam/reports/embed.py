"""What a self-contained page carries inline: 8-bit NIfTI volumes, PNG figures and NiiVue itself.

Volumes are quantised to 8 bits with the NIfTI scale factor (``scl_slope``) holding the step, so
a viewer that honours the header (NiiVue does) shows values in the map's own units; they keep the
source's affine, sform/qform codes and voxel sizes. The gzip stream is written with ``mtime=0``, so
the same volume always gives the same bytes. At HCP size (145 x 174 x 145) an FA map is ~1 MB of
base64 (``docs/report.md``); at the demo size (40 x 48 x 40) ~25 kB.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.io import load_nifti

__all__ = [
    "EmbeddedVolume",
    "quantise",
    "encode_nifti",
    "decode_nifti",
    "embed_volume",
    "box_shell",
    "region_outline",
    "png_data_uri",
    "niivue_info",
    "niivue_script",
    "asset_text",
]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class EmbeddedVolume:
    """One volume of a viewer scene: its base64 ``.nii.gz`` bytes and how NiiVue should draw it.

    Attributes:
        name: file name NiiVue sees (must end in ``.nii.gz``: it picks the reader by extension).
        label: what the page calls it (legend, cursor readout), e.g. ``"FA"``, ``"CAM old [0,1]"``.
        data: base64 of the gzipped NIfTI-1 file.
        colormap: NiiVue colour map (``gray``, ``warm``, ``green``...).
        cal_min, cal_max: display range in the map's units; an overlay is transparent below ``cal_min``.
        opacity: 0..1.
        colormap_negative: colour map of negative values ("" for none), for signed maps.
        colorbar: draw its colour bar.
        role: ``background``, ``overlay`` (the threshold and opacity controls act on it), or
            ``outline`` (a box or region, shown or hidden by a checkbox).
        vmax: the largest absolute value of the map (the threshold slider's range).
        nbytes: size of ``data`` in bytes.
    """

    name: str
    label: str
    data: str
    colormap: str = "gray"
    cal_min: float = 0.0
    cal_max: float = 1.0
    opacity: float = 1.0
    colormap_negative: str = ""
    colorbar: bool = False
    role: str = "background"
    vmax: float = 1.0
    nbytes: int = field(default=0)

    def __post_init__(self) -> None:
        self.nbytes = len(self.data)

    def spec(self, ref: str) -> dict[str, Any]:
        """The JSON the page's script reads; ``ref`` is the id of the element holding ``data``."""
        d = {k: v for k, v in asdict(self).items() if k not in ("data", "nbytes")}
        d["ref"] = ref
        return d


def quantise(data: np.ndarray, reference: nib.Nifti1Image, signed: bool = False) -> nib.Nifti1Image:
    """``data`` as an 8-bit NIfTI image with ``reference``'s geometry and the step in ``scl_slope``.

    Args:
        data: ``(X, Y, Z)`` array on ``reference``'s grid; NaN and Inf become 0.
        reference: the image whose affine, sform/qform (with codes) and voxel sizes are kept.
        signed: int8 over ``[-max|data|, max|data|]`` (difference maps) instead of uint8 over
            ``[min(0, data), max(data)]``.

    Returns:
        the image; its ``get_fdata()`` equals ``data`` to within half a step.
    """
    x = np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if x.shape[:3] != reference.shape[:3] or x.ndim != 3:
        raise InputError(f"expected a 3D array on the grid {reference.shape[:3]}, got shape {x.shape}")
    if signed:
        top = float(np.abs(x).max())
        step = top / 127.0 if top > 0 else 1.0
        q, dtype, inter = np.clip(np.round(x / step), -127, 127).astype(np.int8), np.int8, 0.0
    else:
        low, top = min(0.0, float(x.min())), float(x.max())
        step = (top - low) / 255.0 if top > low else 1.0
        q, dtype, inter = np.clip(np.round((x - low) / step), 0, 255).astype(np.uint8), np.uint8, low
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    header.set_data_shape(q.shape)
    header["cal_min"], header["cal_max"] = 0.0, 0.0
    img = nib.Nifti1Image(q, reference.affine, header)
    # keep the reference's codes (nibabel would otherwise set the sform code from the affine alone)
    img.set_sform(reference.get_sform(), int(reference.header["sform_code"]))
    img.set_qform(reference.get_qform(), int(reference.header["qform_code"]))
    img.header.set_slope_inter(step, inter)
    return img


def encode_nifti(img: nib.Nifti1Image) -> str:
    """base64 of the gzipped single-file NIfTI-1 bytes (deterministic: no time stamp in the gzip).

    The header is written as it is, ``scl_slope``/``scl_inter`` included, and the array's values as
    stored (``img.dataobj`` of :func:`quantise` is already integer): nibabel's own writer would reset
    the scale factors of an integer array it was handed.
    """
    header = img.header.copy()
    data = np.asanyarray(img.dataobj)
    if data.dtype != header.get_data_dtype():
        raise InputError(f"array dtype {data.dtype} differs from the header's {header.get_data_dtype()}")
    header.set_data_shape(data.shape)
    header["magic"] = b"n+1"
    header.set_data_offset(352)
    buf = io.BytesIO()
    header.write_to(buf)  # 348-byte header and the 4-byte extension flag (no extension)
    buf.write(b"\0" * (352 - buf.tell()))
    buf.write(np.asfortranarray(data.astype(header.get_data_dtype(), copy=False)).tobytes(order="F"))
    return base64.b64encode(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0)).decode("ascii")


def decode_nifti(text: str) -> nib.Nifti1Image:
    """The inverse of :func:`encode_nifti` (for tests and for checking a written page)."""
    raw = gzip.decompress(base64.b64decode(text))
    return nib.Nifti1Image.from_bytes(raw)


def embed_volume(
    source: str | os.PathLike | nib.Nifti1Image,
    label: str,
    *,
    data: np.ndarray | None = None,
    signed: bool = False,
    **display: Any,
) -> EmbeddedVolume:
    """Read (or take) a 3D map, quantise it and wrap it for the viewer.

    Args:
        source: a NIfTI file, or an image (its geometry is used; its data unless ``data`` is given).
        label: what the page calls the volume.
        data: values to embed on ``source``'s grid instead of its own (e.g. a box shell).
        signed: see :func:`quantise`.
        display: :class:`EmbeddedVolume` fields (``colormap``, ``cal_min``, ``cal_max``, ``opacity``,
            ``colormap_negative``, ``colorbar``, ``role``).

    Raises:
        InputError: the file is missing, not a 3D NIfTI, or holds NaN/Inf (:func:`hcp_cam.io.load_nifti`).
    """
    img = source if isinstance(source, nib.Nifti1Image) else load_nifti(source, ndim=3)
    values = np.asarray(img.dataobj, dtype=np.float32) if data is None else np.asarray(data)
    q = quantise(values, img, signed=signed)
    vmax = float(np.nanmax(np.abs(values))) if values.size else 0.0
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in label) + ".nii.gz"
    return EmbeddedVolume(name=name, label=label, data=encode_nifti(q), vmax=vmax, **display)


def box_shell(shape: tuple[int, ...], min_index, max_index) -> np.ndarray:
    """uint8 ``(X, Y, Z)``: 1 on the faces of the box ``[min_index, max_index]`` (inclusive), else 0.

    Any plane that cuts the box shows its outline (a plane through a face shows the face).
    """
    out = np.zeros(tuple(shape[:3]), dtype=np.uint8)
    lo = np.clip(np.asarray(min_index, dtype=int), 0, np.asarray(shape[:3]) - 1)
    hi = np.clip(np.asarray(max_index, dtype=int), 0, np.asarray(shape[:3]) - 1)
    if np.any(hi < lo):
        return out
    box = (slice(lo[0], hi[0] + 1), slice(lo[1], hi[1] + 1), slice(lo[2], hi[2] + 1))
    out[box] = 1
    inner = tuple(slice(a + 1, b) for a, b in zip(lo, hi, strict=True))
    if all(s.start < s.stop for s in inner):
        out[inner] = 0
    return out


def region_outline(region: np.ndarray) -> np.ndarray:
    """uint8: the voxels of a binary region that touch its outside (6-neighbourhood)."""
    from scipy.ndimage import binary_erosion

    r = np.asarray(region) > 0
    return (r & ~binary_erosion(r, border_value=0)).astype(np.uint8)


def png_data_uri(path: str | os.PathLike) -> str:
    """A ``data:image/png;base64,...`` URI of a PNG file.

    Raises:
        InputError: the file is not a PNG.
    """
    raw = Path(path).read_bytes()
    if not raw.startswith(_PNG_MAGIC):
        raise InputError("not a PNG file", path)
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def asset_text(name: str) -> str:
    """A text file shipped in ``hcp_cam/reports/assets`` or ``vendor`` (``"assets/viewer.js"``)."""
    return resources.files("hcp_cam.reports").joinpath(name).read_text(encoding="utf-8")


def niivue_info() -> dict[str, Any]:
    """The vendored NiiVue's record (``vendor/niivue.json``: package, version, sha256, licence)."""
    return json.loads(asset_text("vendor/niivue.json"))


def niivue_script() -> str:
    """The vendored NiiVue UMD build, checked against the sha256 recorded when it was vendored.

    Raises:
        ConfigError: the file differs from its record (edited or corrupted package data).
    """
    info = niivue_info()
    raw = resources.files("hcp_cam.reports").joinpath("vendor", info["file"]).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != info["sha256"]:
        raise ConfigError(
            f"vendored NiiVue {info['file']}: sha256 {digest} differs from the recorded {info['sha256']}; "
            "re-vendor it with python -m hcp_cam.reports.vendor_niivue VERSION"
        )
    return raw.decode("utf-8")
