"""The plausibility check of an image given as FA: refusals where it is clearly not FA (a b0, FA
stored x1000, a mask, NaN), warnings where it is a judgement, and FA maps passing untouched."""

from __future__ import annotations

import numpy as np
import pytest

from hcp_cam.data.fa_checks import BRAIN_FRACTION, FA_TOLERANCE, OUT_OF_RANGE_SHARE, check_fa_values
from hcp_cam.errors import InputError

SHAPE = (20, 24, 18)


def _brain(shape=SHAPE) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s) - (s - 1) / 2 for s in shape], indexing="ij"), -1)
    return np.linalg.norm(grid / (np.asarray(shape) / 2), axis=-1) <= 0.9


def _fa(seed: int = 0) -> np.ndarray:
    """FA-like values: grey matter ~0.15, a white-matter core up to 0.85, 0 outside the brain."""
    brain = _brain()
    rng = np.random.default_rng(seed)
    fa = np.where(brain, rng.uniform(0.05, 0.3, SHAPE), 0.0)
    core = _brain() & (np.indices(SHAPE)[0] > 8) & (np.indices(SHAPE)[0] < 12)
    fa[core] = rng.uniform(0.5, 0.85, int(core.sum()))
    return fa.astype(np.float32)


def test_fa_map_passes_without_warnings():
    fa = _fa()
    result = check_fa_values(fa, "fa.nii.gz")
    assert result.warnings == ()
    assert result.n_brain == int((fa != 0).sum()) and result.n_outside == 0
    assert result.minimum == pytest.approx(float(fa[fa != 0].min())) and result.maximum <= 0.85
    assert result.nonzero_fraction == pytest.approx((fa != 0).mean())
    assert BRAIN_FRACTION[0] < result.nonzero_fraction < BRAIN_FRACTION[1]


def test_b0_given_as_fa_is_refused():
    """A b0 (intensities up to ~2000) taken as FA got "old, p = 0.945"."""
    b0 = np.where(_brain(), np.random.default_rng(1).uniform(300, 2000, SHAPE), 0).astype(np.float32)
    with pytest.raises(InputError) as err:
        check_fa_values(b0, "b0.nii.gz", what="input FA map")
    message = str(err.value)
    assert message.startswith(
        "b0.nii.gz: input FA map does not look like FA: expected values within [0, 1], found values 3"
    )
    assert (
        f"({(b0 != 0).sum()} of {(b0 != 0).sum()} brain voxels outside)" in message
        and "a b0 or diffusion-weighted volume, not FA" in message
    )
    assert message.endswith("pass an FA map (hcp-cam fa fits one from the DWI)") and "\n" not in message


def test_fa_stored_times_1000_signed_maps_masks_and_nan_are_refused():
    x1000 = np.round(_fa() * 1000).astype(np.int16)
    with pytest.raises(InputError, match=r"whole numbers up to 1000 are FA stored x1000 \(divide by 1000\)"):
        check_fa_values(x1000)
    signed = _fa() - 0.5 * _brain()
    with pytest.raises(InputError, match="FA is never negative"):
        check_fa_values(signed)
    with pytest.raises(InputError, match=r"non-zero brain voxels all hold 1 \(a binary mask\?\)"):
        check_fa_values(_brain().astype(np.uint8), "mask.nii.gz")
    nan = _fa()
    nan[0, 0, 0] = np.nan
    with pytest.raises(
        InputError, match=r"holds 1 NaN or infinite voxel\(s\) of 8640; .* fslmaths IN -nan OUT"
    ):
        check_fa_values(nan)
    with pytest.raises(InputError, match="is 0 everywhere: expected FA of a brain"):
        check_fa_values(np.zeros(SHAPE, np.float32))
    with pytest.raises(InputError, match="is 0 everywhere inside the mask"):
        check_fa_values(_fa(), mask=np.zeros(SHAPE, bool))


def test_a_few_voxels_just_outside_the_range_warn_at_the_refusal_share():
    """Interpolated FA overshoots [0, 1] in a few voxels: a warning up to OUT_OF_RANGE_SHARE of the
    brain, a refusal above it; values within FA_TOLERANCE of the bounds count as in range."""
    fa = _fa()
    brain_idx = np.flatnonzero(fa)
    allowed = int(OUT_OF_RANGE_SHARE * brain_idx.size)
    fa.flat[brain_idx[:allowed]] = 1.02
    fa.flat[brain_idx[allowed : allowed + 5]] = 1 + FA_TOLERANCE / 2  # rounding, not out of range
    result = check_fa_values(fa, "fa.nii.gz")
    assert result.n_outside == allowed
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(
        f"fa.nii.gz: {allowed} brain voxel(s) of the FA map lie outside [0, 1]"
    )
    fa.flat[brain_idx[allowed]] = 1.02
    with pytest.raises(
        InputError,
        match=rf"does not look like FA: .* found values 0\.0\d+ to 1\.02 \({allowed + 1} of {brain_idx.size} brain",
    ):
        check_fa_values(fa, "fa.nii.gz")


def test_unmasked_low_and_tiny_maps_warn():
    unmasked = np.random.default_rng(2).uniform(0.01, 0.9, SHAPE).astype(np.float32)
    (warning,) = check_fa_values(unmasked).warnings
    assert warning.startswith("100% of the FA map's voxels are non-zero: an FA map is 0 outside the brain")
    # with a mask the background does not count, and nothing is judged about it
    assert check_fa_values(unmasked, mask=_brain()).warnings == ()
    md = np.where(_brain(), 0.0008, 0).astype(np.float32) * np.random.default_rng(3).uniform(0.8, 1.2, SHAPE)
    (warning,) = check_fa_values(md.astype(np.float32)).warnings
    assert "highest value is 0.000" in warning and "not MD in mm^2/s" in warning
    tiny = np.zeros(SHAPE, np.float32)
    tiny[10, 12, 8:10] = [0.4, 0.7]
    (warning,) = check_fa_values(tiny).warnings
    assert "0.0231% of the FA map's voxels are non-zero" in warning


def test_the_input_is_not_changed():
    fa = _fa()
    before = fa.copy()
    check_fa_values(fa, mask=_brain())
    np.testing.assert_array_equal(fa, before)
