"""The generator's misalignment option, reference template and atlas; its default output unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from hcp_cam.errors import ConfigError
from hcp_cam.synth import (
    ATLAS_LABELS,
    MANIFEST,
    atlas_of,
    draw_misalignment,
    generate_dataset,
    make_phantom,
    make_subject,
)

# content hashes of the generator's default output, taken before the misalignment option existed:
# docs/results.md depends on these data staying what they were
DEFAULT_MINIMAL = "ecad65b8e58e3464c4e1e88b87c15cdb5a6f08c9b5da2a59dbc5949ccaa9714b"
DEFAULT_UNPROCESSED = "b214e808de478e5c4c4c0b56c03a5b4e9b0c1e7c80ada46da0a8a68e1f4cc813"
DEFAULT_SUBJECT = "9165348ef8f82e69d25a7c95e358a28a79a584a1ba47fbe279d33846fff5a352"


def content_hash(root: Path) -> str:
    """Every file's path and content (NIfTI: decoded voxels and header; others: bytes)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        h.update(str(p.relative_to(root)).encode())
        if p.name.endswith(".nii.gz"):
            img = nib.load(p)
            h.update(np.asarray(img.dataobj).tobytes())
            h.update(img.header.binaryblock)
        else:
            h.update(p.read_bytes())
    return h.hexdigest()


def test_default_output_is_bit_for_bit_what_it_was(tmp_path):
    generate_dataset(tmp_path / "a", n_subjects=4, shape=(24, 28, 24), seed=3, progress=False)
    assert content_hash(tmp_path / "a") == DEFAULT_MINIMAL
    generate_dataset(
        tmp_path / "b", n_subjects=2, shape=(20, 24, 20), seed=1, layout="unprocessed", n_runs=1,
        oblique_deg=7, progress=False,
    )  # fmt: skip
    assert content_hash(tmp_path / "b") == DEFAULT_UNPROCESSED
    s = make_subject("100206", "old", seed=[0, 100206])
    h = hashlib.sha256()
    p = s.phantom
    for a in (p.tissue, p.tract, p.v1, p.ad, p.rd, p.s0, p.roi, s.affine, s.dwi()):
        h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest() == DEFAULT_SUBJECT
    assert s.misalignment is None


def _rotation_deg(m: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(m[:3, :3]) - 1) / 2, -1, 1))))


def test_drawn_misalignments_stay_in_their_bounds_and_follow_the_seed():
    draws = [draw_misalignment(np.random.default_rng(k)) for k in range(200)]
    angles = [_rotation_deg(m) for m in draws]
    shifts = [np.linalg.norm(m[:3, 3]) for m in draws]
    assert max(angles) <= 10 + 1e-9 and max(angles) > 8  # the bound is reached, not exceeded
    assert max(shifts) <= 6 + 1e-9 and max(shifts) > 5
    for m in draws[:5]:
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)  # rigid
        assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_array_equal(draw_misalignment(np.random.default_rng(3)), draws[3])
    with pytest.raises(ConfigError, match="max rotation"):
        draw_misalignment(np.random.default_rng(0), max_rotation_deg=120)
    with pytest.raises(ConfigError, match="max shift"):
        draw_misalignment(np.random.default_rng(0), max_shift_mm=-1)


def _to_template(volume: np.ndarray, subject, order: int) -> np.ndarray:
    """A subject's volume sampled on the template grid through the true template-to-subject affine."""
    idx = np.linalg.inv(subject.affine) @ subject.template_to_subject @ subject.affine
    return ndimage.affine_transform(volume.astype(float), idx[:3, :3], idx[:3, 3], order=order)


def test_the_recorded_transform_maps_the_average_brain_onto_the_moved_one():
    average = make_phantom((40, 48, 40), rng=None)
    for seed in (1, 5):  # rotations of 7.3 and 7.6 degrees
        moved = make_subject("1", "old", seed=[0, seed], snr=None, misalign=True, jitter=0.0)
        still = make_subject("1", "old", seed=[0, seed], snr=None, misalign=False, jitter=0.0)
        assert _rotation_deg(moved.misalignment) > 0.5 or np.linalg.norm(moved.misalignment[:3, 3]) > 0.5
        # without jitter the unmoved subject is the average brain; the moved one is not...
        np.testing.assert_array_equal(still.phantom.tissue, average.tissue)
        brain = average.mask > 0
        assert (moved.phantom.tissue != average.tissue)[brain].mean() > 0.05
        # ...until it is brought back with the recorded transform
        back_roi = _to_template(moved.roi, moved, order=1) > 0.5
        dice = 2 * (back_roi & (average.roi > 0)).sum() / (back_roi.sum() + average.roi.sum())
        assert dice > 0.9
        back_fa = _to_template(moved.fa, moved, order=1)
        assert np.corrcoef(back_fa[brain], average.fa[brain])[0, 1] > 0.93
        # fibre directions turn with the anatomy: compare in the callosum's core, away from edges
        core = ndimage.binary_erosion(average.tract == 1, iterations=1)
        v_back = np.stack([_to_template(moved.phantom.v1[..., c], moved, order=0) for c in range(3)], -1)
        axes = moved.affine[:3, :3] / np.linalg.norm(moved.affine[:3, :3], axis=0)
        rot = axes.T @ moved.misalignment[:3, :3] @ axes  # image-axes mm frame
        expected = average.v1[core] @ rot.T
        cos = np.clip(np.abs(np.sum(v_back[core] * expected, axis=1)), 0, 1)
        unturned = np.clip(np.abs(np.sum(v_back[core] * average.v1[core], axis=1)), 0, 1)
        angle = _rotation_deg(moved.misalignment)
        assert (
            np.median(np.degrees(np.arccos(cos))) < 0.2 * angle < np.median(np.degrees(np.arccos(unturned)))
        )


def test_misaligned_dataset_writes_transforms_template_and_atlas(tmp_path):
    ds = generate_dataset(
        tmp_path / "d", n_subjects=4, shape=(24, 28, 24), seed=2, misalign=True, progress=False
    )
    gt = tmp_path / "d" / "derivatives" / "ground_truth"
    assert ds.template == gt / "template_fa.nii.gz" and ds.atlas == gt / "atlas.nii.gz"
    manifest = json.loads((tmp_path / "d" / MANIFEST).read_text())
    assert manifest["parameters"]["misalign"] is True and manifest["parameters"]["max_rotation_deg"] == 10.0
    for rel in ("template_fa.nii.gz", "atlas.nii.gz", "atlas_labels.csv"):
        assert f"derivatives/ground_truth/{rel}" in manifest["files"]
    moves = []
    for sid in ds.subjects:
        record = json.loads((gt / f"{sid}_transform.json").read_text())
        m = np.asarray(record["misalignment"]["matrix"])
        assert (
            record["misalignment"]["rotation_deg"] == pytest.approx(_rotation_deg(m))
            and _rotation_deg(m) <= 10
        )
        assert np.linalg.norm(m[:3, 3]) <= 6
        moves.append(m)
    assert not np.allclose(moves[0], moves[1])  # one draw per subject
    template = nib.load(ds.template)
    atlas = nib.load(ds.atlas)
    subject_fa = nib.load(ds.true_fa[ds.subjects[0]])
    np.testing.assert_allclose(template.affine, subject_fa.affine)  # the subjects' (canonical) grid
    assert int(template.header["sform_code"]) > 0 and int(atlas.header["qform_code"]) > 0
    table = pd.read_csv(ds.atlas_labels)
    assert list(table.columns) == ["index", "name"]
    assert dict(zip(table["index"], table["name"], strict=True)) == ATLAS_LABELS
    labels = np.asarray(atlas.dataobj)
    assert set(np.unique(labels)) - {0} == set(ATLAS_LABELS)
    average = make_phantom((24, 28, 24), rng=None)
    np.testing.assert_array_equal(labels == 1, average.roi > 0)  # effect_region is the planted region
    np.testing.assert_allclose(np.asarray(template.dataobj), average.fa)


def test_atlas_sides_follow_world_x():
    average = make_phantom((24, 28, 24), rng=None)
    affine = np.diag([-2.5, 2.5, 2.5, 1.0])  # LAS: voxel index up = world x down = the subject's left
    affine[:3, 3] = [2.5 * 11.5, -2.5 * 13.5, -2.5 * 11.5]
    labels = atlas_of(average, affine)
    named = {v: k for k, v in ATLAS_LABELS.items()}
    left = np.argwhere(labels == named["cortex_left"])[:, 0]
    right = np.argwhere(labels == named["cortex_right"])[:, 0]
    assert left.min() > 11 and right.max() < 12  # left: high indices of an LAS grid
