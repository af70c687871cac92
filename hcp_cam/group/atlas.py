"""Label atlases in the template's space, and the per-label table of group values.

An atlas is a 3D integer NIfTI plus a table of names: a CSV/TSV with ``index,name`` columns, or an
FSL atlas XML (``<data><label index="...">name</label>``). In FSL's XML the voxel value of a label
is its ``index`` for a "Label" atlas and ``index + 1`` for the summary (max-probability) image of a
"Probabilistic" atlas; a ``value`` attribute, if present, wins. Value 0 is background.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from hcp_cam.errors import InputError
from hcp_cam.group.images import check_rigid_affine, same_grid, to_sitk
from hcp_cam.group.warping import resample
from hcp_cam.io import load_nifti

__all__ = ["Atlas", "read_label_table", "load_atlas"]

logger = logging.getLogger(__name__)


@dataclass
class Atlas:
    """A label atlas on the template's grid.

    Attributes:
        labels: ``(X, Y, Z)`` int32 label image (0 = background) on the template grid.
        names: label value -> name, sorted by value.
        resampled: whether the atlas had another grid and was resampled (nearest neighbour).
        source: the atlas file.
    """

    labels: np.ndarray
    names: dict[int, str]
    resampled: bool = False
    source: str = ""

    def name_at(self, index: tuple[int, int, int]) -> tuple[int, str]:
        """The label value and name at a voxel of the template grid (0, "" for background)."""
        value = int(self.labels[tuple(int(i) for i in index)])
        return value, self.names.get(value, "")


def _read_fsl_xml(path: Path) -> dict[int, str]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError(f"unreadable atlas XML ({e})", path) from e
    kind = (root.findtext("header/type") or "label").strip().lower()
    offset = 1 if kind.startswith("probab") else 0  # a probabilistic atlas's summary image: index + 1
    names: dict[int, str] = {}
    for label in root.iter("label"):
        try:
            value = (
                int(label.attrib["value"]) if "value" in label.attrib else int(label.attrib["index"]) + offset
            )
        except (KeyError, ValueError) as e:
            raise InputError(f"a <label> without an integer index ({label.attrib})", path) from e
        names[value] = (label.text or "").strip()
    if not names:
        raise InputError("the atlas XML has no <label> entries", path)
    return names


def read_label_table(path: str | os.PathLike) -> dict[int, str]:
    """Label value -> name from a CSV/TSV (``index,name``; separator by extension, else sniffed) or an
    FSL atlas XML. Background (0) is dropped.

    Raises:
        InputError: unreadable file, missing columns, a non-integer or repeated index.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("atlas label table not found", path)
    if path.suffix.lower() == ".xml":
        names = _read_fsl_xml(path)
    else:
        try:
            sep = "\t" if path.suffix.lower() == ".tsv" else None
            table = pd.read_csv(path, sep=sep, engine="python", dtype=str)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise InputError(f"unreadable label table ({e})", path) from e
        cols = {c.strip().lower(): c for c in table.columns}
        if "index" not in cols or "name" not in cols:
            raise InputError(f"the label table needs columns index,name; found {list(table.columns)}", path)
        names = {}
        for raw, name in zip(table[cols["index"]], table[cols["name"]], strict=True):
            try:
                value = int(str(raw).strip())
            except ValueError as e:
                raise InputError(f"label index {raw!r} is not an integer", path) from e
            if value in names:
                raise InputError(f"label index {value} is listed twice", path)
            names[value] = "" if pd.isna(name) else str(name).strip()
    names.pop(0, None)
    return dict(sorted(names.items()))


def _short(values: list[int], n: int = 10) -> str:
    text = ", ".join(str(v) for v in values[:n])
    return text + (f" and {len(values) - n} more" if len(values) > n else "")


def load_atlas(path: str | os.PathLike, table: str | os.PathLike, template: nib.Nifti1Image) -> Atlas:
    """Read an atlas and its names, check one against the other, and put it on the template's grid.

    An atlas on another grid (shape or affine) is resampled to the template's with nearest
    neighbour through the identity (both must be in the same world space, e.g. MNI152) and a
    warning says so.

    Raises:
        InputError: not a 3D integer-valued image, labels in the image missing from the table, or
            labels in the table that the image does not hold (each listed).
    """
    img = load_nifti(path, ndim=3)
    check_rigid_affine(img.affine, path)
    data = np.asarray(img.dataobj)
    if np.issubdtype(data.dtype, np.floating):
        if not np.allclose(data, np.rint(data)):
            raise InputError(
                "the atlas holds non-integer values (expected a label image, not probabilities)", path
            )
        data = np.rint(data)
    data = data.astype(np.int32)
    names = read_label_table(table)
    present = sorted(int(v) for v in np.unique(data) if v != 0)
    unnamed = [v for v in present if v not in names]
    if unnamed:
        raise InputError(f"atlas labels {_short(unnamed)} are missing from the label table {table}", path)
    absent = [v for v in names if v not in present]
    if absent:
        raise InputError(
            f"the label table lists labels {_short(absent)} that the atlas {path} does not hold", table
        )
    resampled = False
    if not same_grid(img, template):
        logger.warning(
            "%s: atlas grid %s differs from the template grid %s; resampled to the template with nearest "
            "neighbour (same world coordinates assumed)",
            path,
            tuple(data.shape),
            tuple(template.shape[:3]),
        )
        reference = to_sitk(np.zeros(template.shape[:3], np.float32), template.affine)
        data = resample(data, img.affine, reference, sitk.Transform(3, sitk.sitkIdentity), "nearest")
        resampled = True
        lost = [v for v in present if not (data == v).any()]
        if lost:
            logger.warning(
                "%s: labels %s cover no voxel of the template grid after resampling", path, _short(lost)
            )
    return Atlas(labels=data.astype(np.int32), names=names, resampled=resampled, source=str(path))
