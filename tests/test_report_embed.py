"""What the pages carry inline: 8-bit NIfTI copies, outlines, the vendored NiiVue and its checks."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import nibabel as nib
import numpy as np
import pytest

from hcp_cam.errors import ConfigError, InputError
from hcp_cam.reports import embed
from hcp_cam.reports.embed import (
    box_shell,
    decode_nifti,
    embed_volume,
    encode_nifti,
    quantise,
    region_outline,
)
from hcp_cam.reports.html import check_output_path, render_page, write_page
from hcp_cam.reports.vendor_niivue import BUILD_MEMBER, VENDOR_DIR, check_inline_build, vendor_from_tarball
from hcp_cam.synth import make_affine


def _image(data, sform_code=4, qform_code=1):
    affine = make_affine(data.shape, (1.25, 1.5, 2.0), oblique_deg=7.0)
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.set_sform(affine, sform_code)
    img.set_qform(affine, qform_code)
    return img


@pytest.mark.parametrize("signed", [False, True])
def test_quantised_copy_keeps_geometry_and_values_within_half_a_step(signed):
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.7 if signed else 0.0, 0.9, size=(9, 11, 7))
    data[0] = 0.0
    img = _image(data)
    back = decode_nifti(encode_nifti(quantise(data, img, signed=signed)))
    assert back.get_data_dtype() == (np.int8 if signed else np.uint8)
    np.testing.assert_array_equal(back.affine, img.affine)
    assert int(back.header["sform_code"]) == 4 and int(back.header["qform_code"]) == 1
    np.testing.assert_allclose(back.header.get_zooms(), img.header.get_zooms(), atol=1e-6)
    step = (np.abs(data).max() / 127) if signed else data.max() / 255
    assert np.abs(back.get_fdata() - data).max() <= step / 2 + 1e-7
    assert (back.get_fdata()[0] == 0).all()  # zero (unknown, or no difference) stays exactly zero


def test_encoding_is_deterministic_and_compact():
    data = np.zeros((40, 48, 40))
    data[10:20, 10:20, 10:20] = 0.5
    img = _image(data)
    a, b = embed_volume(img, "x"), embed_volume(img, "x")
    assert a.data == b.data  # no time stamp in the gzip stream
    assert a.nbytes < 4000  # 76,800 voxels of mostly zeros
    assert a.name == "x.nii.gz" and a.vmax == pytest.approx(0.5)


def test_nan_and_wrong_grid():
    data = np.ones((4, 5, 6))
    data[1, 1, 1] = np.nan
    assert decode_nifti(encode_nifti(quantise(data, _image(np.ones((4, 5, 6)))))).get_fdata()[1, 1, 1] == 0
    with pytest.raises(InputError, match=r"grid \(4, 5, 6\)"):
        quantise(np.ones((4, 5, 7)), _image(np.ones((4, 5, 6))))


def test_box_shell_outlines_every_plane_through_the_box():
    shell = box_shell((10, 12, 14), [2, 3, 4], [6, 8, 9])
    assert shell[4, 5, 6] == 0 and shell[2, 5, 6] == 1 and shell[6, 8, 9] == 1 and shell[7, 5, 6] == 0
    for k in range(4, 10):  # an axial plane through the box: a rectangle's border
        plane = shell[:, :, k]
        ring = np.argwhere(plane)
        assert (
            ring[:, 0].min() == 2
            and ring[:, 0].max() == 6
            and ring[:, 1].min() == 3
            and ring[:, 1].max() == 8
        )
        if 4 < k < 9:
            assert plane[3:6, 4:8].sum() == 0
    assert box_shell((5, 5, 5), [3, 3, 3], [1, 1, 1]).sum() == 0  # an inverted box draws nothing


def test_region_outline_is_the_region_border():
    region = np.zeros((12, 12, 12), bool)
    region[3:9, 3:9, 3:9] = True
    outline = region_outline(region)
    assert outline[3, 5, 5] == 1 and outline[5, 5, 5] == 0 and outline[2, 5, 5] == 0
    assert outline.sum() == 6**3 - 4**3


def test_vendored_niivue_matches_its_record_and_can_run_inline():
    record = json.loads((VENDOR_DIR / "niivue.json").read_text())
    raw = (VENDOR_DIR / record["file"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == record["sha256"] and len(raw) == record["bytes"]
    assert (
        record["license"] == "BSD-2-Clause" and "BSD 2-Clause" in (VENDOR_DIR / "NIIVUE_LICENSE").read_text()
    )
    check_inline_build(raw.decode())
    assert embed.niivue_script().encode() == raw


@pytest.mark.parametrize("planted", ["import('./chunk.js')", "new Worker(url)", "'</script>'"])
def test_a_build_that_cannot_run_inline_offline_is_refused(planted):
    raw = (VENDOR_DIR / "niivue.umd.js").read_text()
    with pytest.raises(InputError, match="cannot be inlined offline"):
        check_inline_build(raw[:5000] + planted + raw[5000:])


def _tarball(path, build: bytes, license_field="BSD-2-Clause"):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in ((BUILD_MEMBER, build), ("package/package.json", json.dumps(
                {"name": "@niivue/niivue", "version": "9.9.9", "license": license_field}).encode())):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_vendoring_from_an_npm_tarball_records_version_and_checksums(tmp_path):
    build = (VENDOR_DIR / "niivue.umd.js").read_bytes()
    _tarball(tmp_path / "niivue.tgz", build)
    record = vendor_from_tarball(tmp_path / "niivue.tgz", tmp_path / "vendor")
    assert record["version"] == "9.9.9" and record["sha256"] == hashlib.sha256(build).hexdigest()
    assert record["tarball_sha1"] == hashlib.sha1((tmp_path / "niivue.tgz").read_bytes()).hexdigest()
    assert (tmp_path / "vendor" / "niivue.umd.js").read_bytes() == build
    _tarball(tmp_path / "gpl.tgz", build, license_field="GPL-3.0")
    with pytest.raises(InputError, match="BSD-2-Clause"):
        vendor_from_tarball(tmp_path / "gpl.tgz", tmp_path / "other")


def test_a_changed_vendored_file_is_refused(monkeypatch):
    monkeypatch.setattr(
        embed,
        "niivue_info",
        lambda: {**json.loads((VENDOR_DIR / "niivue.json").read_text()), "sha256": "0" * 64},
    )
    with pytest.raises(ConfigError, match="differs from the recorded"):
        embed.niivue_script()


def test_output_checks_and_atomic_write(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        check_output_path(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_path(tmp_path / "file" / "sub" / "r.html")
    out = write_page(render_page("t", "s", []), tmp_path / "new" / "r.html")
    assert out.read_text().startswith("<!DOCTYPE html>") and sorted(p.name for p in out.parent.iterdir()) == [
        "r.html"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        [
            "/x/bin/python",
            "-m",
            "monai.bundle",
            "run",
            "inference",
            "--config_file",
            "['a b/train.json','c/inference.json']",
        ],
        ["hcp-cam", "report", "it's $HOME", "plain", "two words"],
    ],
)
def test_provenance_command_reads_back_as_the_arguments_and_keeps_monai_lists_readable(argv):
    import shlex

    from hcp_cam.reports.provenance import provenance

    command = provenance(argv)["command"]
    assert shlex.split(command) == [argv[0].rsplit("/", 1)[-1], *argv[1:]]
    if argv[1] == "-m":  # the MONAI list is double-quoted, not '"'"'-escaped
        assert "\"['a b/train.json','c/inference.json']\"" in command
