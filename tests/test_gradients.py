"""read_gradients: FSL layouts, shells, DIPY's own files, and every bad table named by its file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dwi_fixtures import make_gradients, write_gradients

from hcp_cam.errors import InputError
from hcp_cam.transforms import GradientTable, read_gradients


def _dipy_files(name: str) -> tuple[Path, Path, Path] | None:
    """DIPY test data shipped inside the package (no download), or None when absent."""
    import dipy

    folder = Path(dipy.__file__).parent / "data" / "files"
    nii = next(
        (folder / f"{name}{ext}" for ext in (".nii.gz", ".nii") if (folder / f"{name}{ext}").exists()), None
    )
    bval, bvec = folder / f"{name}.bval", folder / f"{name}.bvec"
    return (nii, bval, bvec) if nii and bval.exists() and bvec.exists() else None


def test_fsl_3xn_and_nx3_read_the_same(tmp_path):
    bvals, bvecs = make_gradients(n_per_shell=8, seed=3)
    a = read_gradients(*write_gradients(tmp_path / "a", bvals, bvecs, layout="3xN"))
    b = read_gradients(*write_gradients(tmp_path / "b", bvals, bvecs, layout="Nx3"))
    assert isinstance(a, GradientTable)
    np.testing.assert_array_equal(a.bvals, bvals)
    np.testing.assert_allclose(a.bvecs, b.bvecs)
    np.testing.assert_allclose(a.bvecs, bvecs, atol=1e-7)
    assert a.bvecs.shape == (len(bvals), 3)


def test_shells_b0_mask_and_unit_vectors(tmp_path):
    bvals = np.array([5, 990, 1005, 995, 1010, 5, 1985, 2010, 2000, 3010, 2990, 3000, 1000, 2005, 2995])
    rng = np.random.default_rng(0)
    bvecs = rng.normal(size=(len(bvals), 3)) * 3.0  # not unit: normalised on reading
    gtab = read_gradients(*write_gradients(tmp_path, bvals, bvecs), n_volumes=len(bvals))
    np.testing.assert_array_equal(gtab.bvals, bvals)  # as given
    expected = np.where(bvals < 50, 0, np.round(bvals / 1000) * 1000)
    np.testing.assert_array_equal(gtab.shells, expected)
    np.testing.assert_array_equal(gtab.b0_mask, bvals <= 50)
    np.testing.assert_array_equal(gtab.bvecs[gtab.b0_mask], 0.0)  # not unit length: DIPY drops them too
    np.testing.assert_allclose(np.linalg.norm(gtab.bvecs[~gtab.b0_mask], axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gtab.unique_shells, [0, 1000, 2000, 3000])
    with pytest.raises(ValueError):  # frozen arrays
        gtab.bvals[0] = 1


def test_agrees_with_dipy_gradient_table(tmp_path):
    bvals, bvecs = make_gradients(n_per_shell=10, seed=5)
    gtab = read_gradients(*write_gradients(tmp_path, bvals, bvecs))
    ref = gradient_table(bvals, bvecs=bvecs, b0_threshold=50)
    np.testing.assert_array_equal(gtab.b0_mask, ref.b0s_mask)
    np.testing.assert_allclose(gtab.bvecs[~gtab.b0_mask], ref.bvecs[~ref.b0s_mask], atol=1e-7)


@pytest.mark.parametrize("name", ["small_64D", "small_101D"])
def test_dipy_shipped_tables(name):
    files = _dipy_files(name)
    if files is None:
        pytest.skip(f"DIPY's {name} is not shipped with this installation")
    _, bval, bvec = files
    gtab = read_gradients(bval, bvec)
    raw = np.loadtxt(bval).reshape(-1)
    np.testing.assert_array_equal(gtab.bvals, raw)
    assert np.isfinite(gtab.bvecs).all()  # small_64D stores NaN for its b0 direction
    assert gtab.b0_mask.sum() == (raw <= 50).sum() >= 1
    assert gtab.b0_mask[np.argmin(raw)]  # small_101D's lowest b is 15: a b0


def _write_raw(folder: Path, bvals_text: str, bvecs: np.ndarray) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bvals").write_text(bvals_text)
    np.savetxt(folder / "bvecs", bvecs)
    return folder / "bvals", folder / "bvecs"


def _good() -> tuple[np.ndarray, np.ndarray]:
    return make_gradients(shells=(1000.0,), n_per_shell=10, seed=1)


def _case(name: str, tmp: Path):
    """(bvals_path, bvecs_path, n_volumes, offending file, expected words) of one invalid case."""
    bvals, bvecs = _good()
    text = " ".join(f"{b:g}" for b in bvals)
    if name == "count_vs_volumes":
        bv, bc = _write_raw(tmp, text, bvecs.T)
        return bv, bc, len(bvals) + 3, bv, "b-values for an image of"
    if name == "bvecs_count":
        bv, bc = _write_raw(tmp, text, bvecs[:-2].T)
        return bv, bc, None, bc, "3 x N or N x 3"
    if name == "bvecs_4_rows":
        bv, bc = _write_raw(tmp, text, np.vstack([bvecs.T, np.ones(len(bvals))]))
        return bv, bc, None, bc, "3 x N or N x 3"
    if name == "zero_bvec_on_dw":
        z = bvecs.copy()
        z[5] = 0
        bv, bc = _write_raw(tmp, text, z.T)
        return bv, bc, None, bc, "zero-length gradient direction"
    if name == "nan_bvec_on_dw":
        z = bvecs.copy()
        z[4, 1] = np.nan
        bv, bc = _write_raw(tmp, text, z.T)
        return bv, bc, None, bc, "non-finite gradient direction"
    if name == "no_b0":
        bv, bc = _write_raw(tmp, " ".join(f"{b + 100:g}" for b in bvals), bvecs.T + 0.01)
        return bv, bc, None, bv, "no b0 volume"
    if name == "five_directions":
        g = bvecs.copy()
        g[2:] = g[2 + np.arange(len(g) - 2) % 5]  # only 5 distinct axes
        g[3] = -g[3]  # the opposite sign is the same axis
        bv, bc = _write_raw(tmp, text, g.T)
        return bv, bc, None, bc, "at least 6 distinct non-collinear"
    if name == "coplanar":
        ang = np.linspace(0, np.pi, len(bvals), endpoint=False)
        g = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1)
        bv, bc = _write_raw(tmp, text, g.T)
        return bv, bc, None, bc, "at least 6 distinct non-collinear"
    if name == "nan_bval":
        words = text.split()
        words[4] = "nan"
        bv, bc = _write_raw(tmp, " ".join(words), bvecs.T)
        return bv, bc, None, bv, "NaN"
    if name == "not_numbers":
        bv, bc = _write_raw(tmp, "0 1000 abc", bvecs.T)
        return bv, bc, None, bv, "cannot read b-values"
    if (
        name == "no_dw_volume"
    ):  # every b at or below the b0 threshold: blamed on the b-values, not the directions
        bv, bc = _write_raw(tmp, " ".join("30" if b > 50 else "0" for b in bvals), bvecs.T)
        return bv, bc, None, bv, "no diffusion-weighted volume"
    if name == "all_zero":
        bv, bc = _write_raw(tmp, " ".join("0" for _ in bvals), bvecs.T)
        return bv, bc, None, bv, "no diffusion-weighted volume"
    if name == "s_per_m2":
        bv, bc = _write_raw(tmp, " ".join(f"{b * 1e6:g}" for b in bvals), bvecs.T)
        return bv, bc, None, bv, "b-values look like s/m^2"
    if name == "ms_per_um2":
        bv, bc = _write_raw(tmp, " ".join(f"{b / 1000:g}" for b in bvals), bvecs.T)
        return bv, bc, None, bv, "b-values look like ms/um^2"
    if name == "implausible":
        bv, bc = _write_raw(tmp, " ".join(f"{b * 200:g}" for b in bvals), bvecs.T)
        return bv, bc, None, bv, "is implausible"
    if name == "folder":
        bv, bc = _write_raw(tmp, text, bvecs.T)
        bv.unlink()
        bv.mkdir()
        return bv, bc, None, bv, "found a folder"
    if name == "missing":
        bv, bc = _write_raw(tmp, text, bvecs.T)
        bc.unlink()
        return bv, bc, None, bc, "not found"
    raise AssertionError(name)


INVALID = [
    "count_vs_volumes",
    "bvecs_count",
    "bvecs_4_rows",
    "zero_bvec_on_dw",
    "nan_bvec_on_dw",
    "no_b0",
    "five_directions",
    "coplanar",
    "nan_bval",
    "not_numbers",
    "missing",
    "no_dw_volume",
    "all_zero",
    "s_per_m2",
    "ms_per_um2",
    "implausible",
    "folder",
]


@pytest.mark.parametrize("name", INVALID)
def test_invalid_tables_name_the_file(name, tmp_path):
    bv, bc, n_volumes, culprit, words = _case(name, tmp_path)
    with pytest.raises(InputError) as err:
        read_gradients(bv, bc, n_volumes=n_volumes)
    assert str(culprit) in str(err.value)
    assert words in str(err.value)


def test_valid_table_passes_the_same_checks(tmp_path):
    """The invalid cases above differ from this valid one only in what they break."""
    bvals, bvecs = _good()
    bv, bc = _write_raw(tmp_path, " ".join(f"{b:g}" for b in bvals), bvecs.T)
    assert len(read_gradients(bv, bc, n_volumes=len(bvals))) == len(bvals)
