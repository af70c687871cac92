"""`hcp-cam cam` (hcp_cam.cam.single) on real NIfTI files and real networks, and the pipeline's
model-randomisation check. Networks are built untrained with get_network (AlexNet, width 0.125,
48x48 slices) and saved as a run folder (config.json, datalist.json, checkpoints/model.pt)."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn as nn
from dwi_fixtures import make_affine, write_dwi

from hcp_cam.cam.bbox import EmptyCAMWarning
from hcp_cam.cam.inferer import CAMInferer
from hcp_cam.cam.pipeline import run_cam_inference
from hcp_cam.cam.sanity import randomisation_check_volume
from hcp_cam.cli import main
from hcp_cam.errors import ConfigError
from hcp_cam.networks import NETWORKS, get_network
from hcp_cam.training.data import PreparedData, build_transforms

SHAPE = (12, 14, 10)
IMAGE_SIZE = 48
K = 4  # slices per axis the "run" was trained on: fewer than the volume has, so some stay unknown
CONFIG = {
    "arch": "alexnet",
    "spatial_dims": 2,
    "slices_per_axis": K,
    "slice_selection": "centre",
    "image_size": IMAGE_SIZE,
    "network_width": 0.125,
    "batch_norm": None,
    "num_classes": 2,
    "seed": 0,
}


def _ellipsoid(shape=SHAPE) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s) - (s - 1) / 2 for s in shape], indexing="ij"), -1)
    return np.linalg.norm(grid / (np.asarray(shape) / 2), axis=-1) <= 0.95


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path


def _write_run(folder: Path, network: nn.Module, cfg: dict | None = None, labels=("young", "old")) -> Path:
    """A run folder as training writes it; returns checkpoints/model.pt."""
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg or CONFIG))
    if labels is not None:
        (folder / "datalist.json").write_text(json.dumps({"labels": list(labels), "training": []}))
    torch.save(network.state_dict(), folder / "checkpoints" / "model.pt")
    return folder / "checkpoints" / "model.pt"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A run folder with an untrained AlexNet and a tiny FA map with its mask (LAS affine)."""
    root = tmp_path_factory.mktemp("cam_cli")
    torch.manual_seed(0)
    net = get_network("alexnet", width=CONFIG["network_width"])
    assert net.min_input_size <= IMAGE_SIZE
    ckpt = _write_run(root / "run", net)
    # a training checkpoint holds the weights under "model", beside the optimizer state
    torch.save(
        {"model": net.state_dict(), "epoch": 1}, root / "run" / "checkpoints" / "checkpoint_epoch=1.pt"
    )
    mask = _ellipsoid()
    fa = np.where(mask, np.random.default_rng(0).uniform(0.1, 0.9, SHAPE), 0).astype(np.float32)
    affine = make_affine("las")
    return {
        "root": root,
        "ckpt": ckpt,
        "net": net,
        "affine": affine,
        "mask_array": mask,
        "fa": _save(fa, affine, root / "fa.nii.gz"),
        "mask": _save(mask.astype(np.uint8), affine, root / "mask.nii.gz"),
    }


def _geometry_equal(a: Path, b: Path) -> None:
    ia, ib = nib.load(str(a)), nib.load(str(b))
    assert ia.shape[:3] == ib.shape[:3]
    np.testing.assert_array_equal(ia.affine, ib.affine)
    for getter in ("get_sform", "get_qform"):
        ma, ca = getattr(ia.header, getter)(coded=True)
        mb, cb = getattr(ib.header, getter)(coded=True)
        assert int(ca) == int(cb) > 0
        np.testing.assert_array_equal(ma, mb)


def _trained_range(n: int, k: int = K) -> set[int]:
    start = (n - k) // 2  # centre of the mask's box, which spans the whole (small) volume here
    return set(range(start, start + k))


def test_roi_adds_localization_scores_with_the_flat_map_baseline(files, tmp_path):
    """--roi scores the map in the JSON; the energy baseline is the region's share of the voxels the
    fused map knows (the block where the three trained ranges cross, inside the mask)."""
    mask = files["mask_array"]
    roi = np.zeros(SHAPE, bool)
    roi[: SHAPE[0] // 2] = True
    roi &= mask
    roi_p = _save(roi.astype(np.uint8), files["affine"], tmp_path / "roi.nii.gz")
    prefix = tmp_path / "sub01"
    rc = main(["cam", "--checkpoint", str(files["ckpt"]), str(files["fa"]), "--mask", str(files["mask"])]
              + ["--out", str(prefix), "--class", "old", "--device", "cpu", "--roi", str(roi_p), "--no-figure"])  # fmt: skip
    assert rc == 0
    loc = json.loads(Path(f"{prefix}_bbox.json").read_text())["localization"]
    block = np.ones(SHAPE, bool)
    for axis, n in enumerate(SHAPE):
        idx = np.arange(n)[tuple(slice(None) if a == axis else None for a in range(3))]
        block &= np.isin(idx, sorted(_trained_range(n)))
    known = block & mask
    assert loc["energy_baseline"] == pytest.approx((roi & known).sum() / known.sum())
    assert 0.0 < loc["energy_baseline"] < 1.0
    assert set(loc) >= {"pointing_game", "peak_distance", "energy_pointing_game", "iou", "dice", "box_iou"}


def test_fa_input_writes_cam_in_fa_grid(files, tmp_path, capsys):
    prefix = tmp_path / "out" / "sub01"
    rc = main(["cam", "--checkpoint", str(files["ckpt"]), str(files["fa"]), "--mask", str(files["mask"])]
              + ["--out", str(prefix), "--class", "old", "--device", "cpu"])  # fmt: skip
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1 and "predicted" in line and " mm" in line and "CAM of old" in line
    cam_p, cam01_p = Path(f"{prefix}_cam.nii.gz"), Path(f"{prefix}_cam01.nii.gz")
    for p in (cam_p, cam01_p, Path(f"{prefix}_overlay.png")):
        assert p.is_file()
    _geometry_equal(cam_p, files["fa"])
    _geometry_equal(cam01_p, files["fa"])
    raw_img, cam01 = nib.load(str(cam_p)), nib.load(str(cam01_p)).get_fdata()
    assert raw_img.header["descrip"].tobytes().startswith(b"CAM raw, class old")
    raw, mask = raw_img.get_fdata(), files["mask_array"]
    assert np.all(raw[~mask] == 0) and np.abs(raw[mask]).max() > 0
    assert cam01.min() >= 0 and np.isclose(cam01.max(), 1.0)
    # the fused map is known where every axis' trained centre range passes (coverage "all"): 0 elsewhere
    on_axis = []
    for axis, n in enumerate(SHAPE):
        idx = np.arange(n)[tuple(slice(None) if a == axis else None for a in range(3))]
        on_axis.append(np.broadcast_to(np.isin(idx, sorted(_trained_range(n))), SHAPE))
    block = on_axis[0] & on_axis[1] & on_axis[2]
    assert (~block & mask).any()
    assert np.all(raw[~block] == 0) and np.all(raw[block & mask] != 0)
    # with --coverage any: wherever one axis' range passes
    rc = main(["cam", "--checkpoint", str(files["ckpt"]), str(files["fa"]), "--mask", str(files["mask"])]
              + ["--out", str(prefix) + "_any", "--class", "old", "--device", "cpu", "--coverage", "any"]
              + ["--no-figure"])  # fmt: skip
    assert rc == 0
    raw_any = nib.load(f"{prefix}_any_cam.nii.gz").get_fdata()
    union = on_axis[0] | on_axis[1] | on_axis[2]
    assert np.all(raw_any[~union] == 0) and np.all(raw_any[union & mask] != 0)
    np.testing.assert_allclose(raw_any[block], raw[block], rtol=1e-5, atol=1e-6)
    row = json.loads(Path(f"{prefix}_bbox.json").read_text())
    keys = ("predicted", "prob_young", "prob_old", "cam_class", "peak_voxel", "peak_mm", "box", "box_min_mm")
    keys += ("box_max_mm", "threshold_fraction", "checkpoint", "method", "slices")
    assert set(keys) <= set(row)
    assert row["cam_class"] == "old" and np.isclose(row["prob_young"] + row["prob_old"], 1.0)
    peak = tuple(row["peak_voxel"])
    assert raw[peak] == raw[mask].max() and np.isclose(cam01[peak], 1.0)
    np.testing.assert_allclose(row["peak_mm"], nib.affines.apply_affine(files["affine"], peak), atol=1e-3)
    box = row["box"]
    assert not box["empty"] and all(
        lo <= i <= hi for lo, i, hi in zip(box["min_index"], peak, box["max_index"], strict=True)
    )


def test_slices_all_fills_the_untrained_slices(files, tmp_path):
    prefix = tmp_path / "all"
    rc = main(["cam", "--checkpoint", str(files["ckpt"]), str(files["fa"]), "--out", str(prefix)]
              + ["--slices", "all", "--no-figure", "--threshold", "0.5"])  # fmt: skip
    assert rc == 0
    raw = nib.load(f"{prefix}_cam.nii.gz").get_fdata()
    assert np.all(raw[files["mask_array"]] != 0)  # FA > 0 is the brain here, every slice computed
    assert not Path(f"{prefix}_overlay.png").exists()
    row = json.loads(Path(f"{prefix}_bbox.json").read_text())
    assert (
        row["threshold_fraction"] == 0.5 and row["slices"] == "all" and row["cam_class"] == row["predicted"]
    )


def test_dwi_input_fits_fa_first(files, tmp_path, caplog):
    dwi = write_dwi(tmp_path / "dwi", shape=SHAPE, affine="oblique", n_per_shell=6, noise_sigma=5.0)
    prefix = tmp_path / "out" / "dwi01"
    epoch_ckpt = files["root"] / "run" / "checkpoints" / "checkpoint_epoch=1.pt"
    caplog.set_level("INFO")
    # gradients found beside the DWI (dwi.bval/dwi.bvec); nested training checkpoint; Grad-CAM
    rc = main(["cam", "--checkpoint", str(epoch_ckpt), str(dwi.dwi), "--mask", str(dwi.mask), "--out", str(prefix)]
              + ["--method", "gradcam", "--class", "difference", "--no-figure"])  # fmt: skip
    assert rc == 0
    fa_p = Path(f"{prefix}_fa.nii.gz")
    _geometry_equal(fa_p, dwi.dwi)
    _geometry_equal(Path(f"{prefix}_cam.nii.gz"), fa_p)
    fa = nib.load(str(fa_p)).get_fdata()
    assert np.abs(fa[dwi.mask_array] - dwi.fa[dwi.mask_array]).mean() < 0.05
    row = json.loads(Path(f"{prefix}_bbox.json").read_text())
    assert row["method"] == "gradcam" and row["cam_class"] == "old minus young" and row["fa"] == str(fa_p)
    assert "fitting the tensor" in caplog.text


def test_labels_default_when_no_datalist(tmp_path, files, caplog):
    ckpt = _write_run(tmp_path / "run", files["net"], labels=None)
    caplog.set_level("INFO")
    rc = main(["cam", "--checkpoint", str(ckpt), str(files["fa"]), "--out", str(tmp_path / "s")]
              + ["--class", "1", "--no-figure"])  # fmt: skip
    assert rc == 0
    assert "assuming the classes ['young', 'old']" in caplog.text
    assert json.loads((tmp_path / "s_bbox.json").read_text())["cam_class"] == "old"


class HeadlessNet(nn.Module):
    """A small classifier without the GAP head (no ``features``/``classifier``): CAM cannot use it."""

    def __init__(self, num_classes: int = 2, **_: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 8).flatten(1))


def test_cam_method_needs_a_gap_head(tmp_path, files, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="use method='gradcam'"):
        CAMInferer("cam")(torch.zeros(1, 1, 16, 16), HeadlessNet())
    # through the CLI: registered as a real network of the registry, loaded from a real checkpoint
    monkeypatch.setitem(NETWORKS, "headless", HeadlessNet)
    ckpt = _write_run(tmp_path / "run", HeadlessNet(), {**CONFIG, "arch": "headless"})
    prefix = tmp_path / "h"
    assert main(["cam", "--checkpoint", str(ckpt), str(files["fa"]), "--out", str(prefix)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gradcam" in err and "HeadlessNet" in err
    assert not list(tmp_path.glob("h_*"))
    rc = main(["cam", "--checkpoint", str(ckpt), str(files["fa"]), "--out", str(prefix)]
              + ["--method", "gradcam", "--layer", "conv", "--no-figure"])  # fmt: skip
    assert rc == 0 and Path(f"{prefix}_cam.nii.gz").is_file()


def test_all_zero_cam_is_written_with_empty_box(tmp_path, files, caplog, capsys):
    net = get_network("alexnet", width=CONFIG["network_width"])
    with torch.no_grad():
        net.classifier.weight.zero_()  # every class map is sum_k 0 * f_k = 0
    ckpt = _write_run(tmp_path / "run", net)
    prefix = tmp_path / "z"
    rc = main(["cam", "--checkpoint", str(ckpt), str(files["fa"]), "--out", str(prefix), "--class", "old"])
    assert rc == 0
    assert "zero" in caplog.text and "WARNING" in caplog.text
    assert "box empty" in capsys.readouterr().out
    for suffix in ("_cam.nii.gz", "_cam01.nii.gz"):
        assert not nib.load(f"{prefix}{suffix}").get_fdata().any()
    row = json.loads(Path(f"{prefix}_bbox.json").read_text())
    assert row["box"]["empty"] and row["box_min_mm"] is None
    assert Path(f"{prefix}_overlay.png").is_file()


def _bad_case(kind: str, files: dict, tmp: Path) -> tuple[list[str], str]:
    """CLI arguments (without --out) of one bad input, and a phrase the error must hold."""
    run = files["root"] / "run"
    ckpt, fa, mask, aff = str(files["ckpt"]), str(files["fa"]), files["mask_array"], files["affine"]
    if kind in ("arch", "classes"):
        name, ncls = ("vgg16", 2) if kind == "arch" else ("alexnet", 3)
        other = run / "checkpoints" / f"other_{kind}.pt"
        torch.save(get_network(name, width=0.125, num_classes=ncls).state_dict(), other)
        return ["--checkpoint", str(other), fa], "does not fit the configured network"
    if kind == "text":
        p = run / "checkpoints" / "notes.pt"
        p.write_text("these are not weights\n")
        return ["--checkpoint", str(p), fa], "is truncated, corrupt or not a PyTorch file"
    if kind == "truncated":
        p = run / "checkpoints" / "truncated.pt"
        p.write_bytes(files["ckpt"].read_bytes()[:2000])
        return ["--checkpoint", str(p), fa], "is truncated, corrupt or not a PyTorch file"
    if kind == "missing_ckpt":
        return ["--checkpoint", str(run / "checkpoints" / "nope.pt"), fa], "does not exist"
    if kind == "mask_grid":
        p = _save(np.ones((12, 14, 9), np.uint8), aff, tmp / "m.nii.gz")
        return ["--checkpoint", ckpt, fa, "--mask", str(p)], "mask grid (12, 14, 9) differs"
    if kind == "mask_affine":
        shifted = aff.copy()
        shifted[:3, 3] += 5.0
        p = _save(mask.astype(np.uint8), shifted, tmp / "m.nii.gz")
        return ["--checkpoint", ckpt, fa, "--mask", str(p)], "affine differs"
    if kind == "empty_mask":
        p = _save(np.zeros(SHAPE, np.uint8), aff, tmp / "m.nii.gz")
        return ["--checkpoint", ckpt, fa, "--mask", str(p)], "mask is empty"
    if kind == "dwi_empty_mask":  # must fail before the tensor fit writes PREFIX_fa
        d = write_dwi(tmp / "dwi", shape=SHAPE, n_per_shell=6)
        _save(np.zeros(SHAPE, np.uint8), d.affine, d.mask)
        return ["--checkpoint", ckpt, str(d.dwi), "--mask", str(d.mask)], "mask is empty"
    if kind == "roi_grid":
        p = _save(np.ones((6, 6, 6), np.uint8), aff, tmp / "roi.nii.gz")
        return ["--checkpoint", ckpt, fa, "--roi", str(p)], "ROI grid (6, 6, 6) differs"
    if kind == "5d":
        p = _save(np.zeros((*SHAPE, 2, 2), np.float32), aff, tmp / "five.nii.gz")
        return ["--checkpoint", ckpt, str(p)], "got a 5D image"
    if kind == "missing":
        return ["--checkpoint", ckpt, str(tmp / "absent_fa.nii.gz")], "not found"
    if kind == "not_nifti":
        p = tmp / "fa.nii.gz"
        p.write_text("not an image")
        return ["--checkpoint", ckpt, str(p)], "cannot read the input image as NIfTI"
    if kind == "class":
        return ["--checkpoint", ckpt, fa, "--class", "middle"], "unknown cam_class 'middle'"
    if kind == "b0_as_fa":  # scanner intensities up to ~2000: answered "old, p = 0.945" before
        b0 = np.where(mask, np.random.default_rng(1).uniform(200, 2000, SHAPE), 0).astype(np.float32)
        p = _save(b0, aff, tmp / "b0.nii.gz")
        return [
            "--checkpoint",
            ckpt,
            str(p),
        ], f"{p}: input FA map does not look like FA: expected values within"
    if kind == "mask_as_fa":
        p = _save(mask.astype(np.uint8), aff, tmp / "brain_mask.nii.gz")
        return ["--checkpoint", ckpt, str(p)], "non-zero brain voxels all hold 1 (a binary mask?)"
    if kind == "nan_fa":
        data = np.asarray(nib.load(fa).dataobj).copy()
        data[0, 0, 0] = np.nan
        p = _save(data, aff, tmp / "nan_fa.nii.gz")
        return ["--checkpoint", ckpt, str(p)], "holds 1 NaN or Inf values"  # refused on loading
    if kind in ("config_negative_size", "config_below_minimum", "config_width"):
        key, value = {"config_negative_size": ("image_size", -5), "config_below_minimum": ("image_size", 8),
                      "config_width": ("network_width", "wide")}[kind]  # fmt: skip
        bad = tmp / "bad_config.json"
        bad.write_text(json.dumps({**CONFIG, key: value}))
        phrase = {
            "config_negative_size": f"run configuration {bad}: image_size must be a whole number of voxels >= 1, got -5",
            "config_below_minimum": f"run configuration {bad}: image_size 8 is below the ",
            "config_width": "network_width must be a width multiplier > 0, got 'wide'",
        }[kind]
        return ["--checkpoint", ckpt, "--config", str(bad), fa], phrase
    if kind == "pickled_checkpoint":
        p = run / "checkpoints" / "with_objects.pt"
        torch.save({"model": files["net"].state_dict(), "args": argparse.Namespace(lr=0.1)}, p)
        return [
            "--checkpoint",
            str(p),
            fa,
        ], "holds pickled Python objects (argparse.Namespace) besides tensors"
    if kind == "dwi_unknown_layer":  # must fail before the tensor fit writes PREFIX_fa
        d = write_dwi(tmp / "dwi", shape=SHAPE, n_per_shell=6)
        return [
            "--checkpoint",
            ckpt,
            str(d.dwi),
            "--method",
            "gradcam",
            "--layer",
            "nope",
        ], "has no layer 'nope'"
    raise AssertionError(kind)


BAD = ["arch", "classes", "text", "truncated", "missing_ckpt", "mask_grid", "mask_affine", "empty_mask"]
BAD += ["dwi_empty_mask", "roi_grid", "5d", "missing", "not_nifti", "class"]
BAD += ["b0_as_fa", "mask_as_fa", "nan_fa", "config_negative_size", "config_below_minimum", "config_width"]
BAD += ["pickled_checkpoint", "dwi_unknown_layer"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_exit_2_nothing_written(kind, files, tmp_path, capsys):
    args, phrase = _bad_case(kind, files, tmp_path)
    prefix = tmp_path / "out" / "sub"
    assert main(["cam", *args, "--out", str(prefix)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hcp-cam cam: error:"), err
    assert phrase in err, err
    assert captured.out == ""
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _prepared(files: dict, subjects: list[str]) -> PreparedData:
    entries = [
        {
            "subject": s,
            "acquisition": "dwi",
            "group": "old",
            "label": 1,
            "fa": str(files["fa"]),
            "mask_abs": None,
        }
        for s in subjects
    ]
    datalist = {"labels": ["young", "old"], "training": [], "validation": [], "test": entries}
    return PreparedData(files["root"], datalist, {"training": [], "validation": [], "test": entries}, 2, K)


def test_pipeline_randomisation_check(files, tmp_path):
    _, eval_t = build_transforms(spatial_dims=2, image_size=IMAGE_SIZE)
    out = tmp_path / "run"
    table = run_cam_inference(
        _prepared(files, ["s1"]), files["net"], out, eval_t, cam_class="old", figures=False
    )
    assert list(table["subject"]) == ["s1"]
    rc = json.loads((out / "cam" / "randomisation_check.json").read_text())
    for key in ("spearman", "interpretation", "passed", "n_inputs", "class", "method", "acquisition"):
        assert key in rc
    r = rc["spearman"]["all_layers"]
    assert -1.0 <= r < 0.999 and -1.0 <= rc["spearman"]["classifier"] < 0.999
    assert rc["passed"] == (r < 0.5) and rc["interpretation"].startswith("low" if r < 0.5 else "high")
    assert rc["class"] == 1 and rc["acquisition"] == "s1/dwi" and rc["n_inputs"] == 3 * K
    off = tmp_path / "off"
    run_cam_inference(
        _prepared(files, ["s1"]),
        files["net"],
        off,
        eval_t,
        cam_class="old",
        figures=False,
        randomisation_check=False,
    )
    assert (off / "cam" / "summary.csv").is_file() and not (off / "cam" / "randomisation_check.json").exists()


@pytest.mark.parametrize(
    "method, size, expect",
    [("cam", IMAGE_SIZE, "number"), ("gradcam", 32, "undefined")],  # at 32 voxels the feature map is 1x1x1
)
def test_randomisation_check_3d_network(files, tmp_path, method, size, expect):
    net = get_network("alexnet", spatial_dims=3, width=0.125)
    _, eval_t = build_transforms(spatial_dims=3, image_size=size)
    out = tmp_path / "rc.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyCAMWarning)
        result = randomisation_check_volume(files["fa"], files["mask"], net, CAMInferer(method), eval_t, out)
    written = json.loads(out.read_text())  # strict JSON: no NaN
    assert (
        written["input"] == "volume"
        and written["n_inputs"] == 1
        and written == json.loads(json.dumps(result))
    )
    r = written["spearman"]["all_layers"]
    if expect == "number":
        assert -1.0 <= r < 0.999 and written["interpretation"].split()[0] in ("low", "high")
    else:
        assert r is None and not written["passed"] and written["interpretation"].startswith("undefined")


def test_b0_given_as_fa_is_refused_in_one_line(files, tmp_path, capsys):
    """`hcp-cam cam` took a b0 (values up to ~2000) as FA and answered "old, p = 0.945"."""
    mask = files["mask_array"]
    b0 = np.where(mask, np.random.default_rng(1).uniform(200, 2000, SHAPE), 0).astype(np.float32)
    p = _save(b0, files["affine"], tmp_path / "b0.nii.gz")
    before = p.read_bytes()
    assert main(["cam", "--checkpoint", str(files["ckpt"]), str(p), "--out", str(tmp_path / "o" / "s")]) == 2
    lo, hi, n = b0[mask].min(), b0[mask].max(), int(mask.sum())
    assert capsys.readouterr().err == (
        f"hcp-cam cam: error: {p}: input FA map does not look like FA: expected values within [0, 1], "
        f"found values {lo:.4g} to {hi:.4g} ({n} of {n} brain voxels outside); scanner intensities like "
        "these are a b0 or diffusion-weighted volume, not FA; pass an FA map (hcp-cam fa fits one from the DWI)\n"
    )
    assert p.read_bytes() == before and not (tmp_path / "o").exists()


def test_fa_with_a_few_voxels_above_one_warns_and_runs(files, tmp_path, caplog):
    data = np.asarray(nib.load(str(files["fa"])).dataobj).copy()
    data[tuple(np.argwhere(files["mask_array"])[0])] = 1.05  # interpolation overshoot in one voxel
    p = _save(data, files["affine"], tmp_path / "fa_interp.nii.gz")
    caplog.set_level("WARNING")
    assert (
        main(["cam", "--checkpoint", str(files["ckpt"]), str(p), "--out", str(tmp_path / "s"), "--no-figure"])
        == 0
    )
    assert f"{p}: 1 brain voxel(s) of the input FA map lie outside [0, 1]" in caplog.text
    assert (tmp_path / "s_cam.nii.gz").is_file()


def test_output_that_is_a_folder_or_under_a_file_exit_2_before_any_work(files, tmp_path, capsys):
    (tmp_path / "s_cam.nii.gz").mkdir()
    args = ["cam", "--checkpoint", str(files["ckpt"]), str(files["fa"])]
    assert main([*args, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"hcp-cam cam: error: {tmp_path / 's_cam.nii.gz'}: --out: this output is an existing folder; choose another --out\n"
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*args, "--out", str(blocker / "s")]) == 2
    assert f"--out lies under {blocker}, which is a file, not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "s_cam.nii.gz"]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_cam_over_an_earlier_prefix_leaves_the_earlier_outputs_as_they_were(files, tmp_path):
    """A run stopped after the tensor fit wrote the new FA (here: interrupted, as Ctrl-C does) left the
    new FA beside the old CAM; now every output goes to a hidden folder and is renamed at the end."""
    import signal
    import subprocess
    import sys
    import time

    prefix = tmp_path / "out" / "sub"

    def args(seed: int) -> list[str]:  # one subject's DWI (the seed makes another FA) into the prefix
        dwi = write_dwi(
            tmp_path / f"dwi{seed}", shape=(36, 40, 30), n_per_shell=6, noise_sigma=5.0, seed=seed
        )
        return [
            "cam",
            "--checkpoint",
            str(files["ckpt"]),
            str(dwi.dwi),
            "--mask",
            str(dwi.mask),
            "--out",
            str(prefix),
        ]

    assert main([*args(0), "--class", "old"]) == 0
    earlier = _outputs(prefix.parent)
    suffixes = ("_fa.nii.gz", "_cam.nii.gz", "_cam01.nii.gz", "_bbox.json", "_overlay.png")
    assert set(earlier) == {f"sub{s}" for s in suffixes}

    cmd = [sys.executable, "-m", "hcp_cam.cli", *args(1), "--class", "young", "--slices", "all"]
    # the child must see Ctrl-C: an ignored SIGINT (set by a library earlier in the test process)
    # is inherited across exec, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # interrupt as soon as the new FA exists, wherever it is written (hidden folders included)
    started, deadline, staged = time.time_ns(), time.monotonic() + 120, []
    try:
        while proc.poll() is None and time.monotonic() < deadline and not staged:
            found = [p for p in prefix.parent.rglob("sub_fa.nii.gz") if p.stat().st_mtime_ns > started]
            staged = [p for p in found if p.stat().st_size > 0]
            time.sleep(0.002)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGINT)
    finally:
        _, err = proc.communicate(timeout=60)
    assert staged and alive, f"the run ended before it could be interrupted: {err[-2000:]}"
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert _outputs(prefix.parent) == earlier  # same names, same bytes, no staging folder left


def test_an_earlier_runs_outputs_are_replaced_as_a_set(files, tmp_path, caplog):
    """A second run with other options over a prefix leaves that run's files only: the first run's
    FA and figure go (they belong to another CAM), unless one of them is an input of the second."""
    dwi = write_dwi(tmp_path / "dwi", shape=SHAPE, n_per_shell=6)
    prefix = tmp_path / "out" / "sub"
    ckpt = str(files["ckpt"])
    assert (
        main(["cam", "--checkpoint", ckpt, str(dwi.dwi), "--mask", str(dwi.mask), "--out", str(prefix)]) == 0
    )
    fa_out = Path(f"{prefix}_fa.nii.gz")
    fa_bytes = fa_out.read_bytes()
    # the first run's FA as the input, no figure: the FA stays (an input), the figure goes
    caplog.set_level("INFO")
    assert main(["cam", "--checkpoint", ckpt, str(fa_out), "--out", str(prefix), "--no-figure"]) == 0
    assert sorted(_outputs(prefix.parent)) == [
        "sub_bbox.json",
        "sub_cam.nii.gz",
        "sub_cam01.nii.gz",
        "sub_fa.nii.gz",
    ]
    assert fa_out.read_bytes() == fa_bytes
    assert f"removed {prefix}_overlay.png, left by an earlier run with other options" in caplog.text
    # another FA: the first run's FA is stale now
    assert main(["cam", "--checkpoint", ckpt, str(files["fa"]), "--out", str(prefix), "--no-figure"]) == 0
    assert sorted(_outputs(prefix.parent)) == ["sub_bbox.json", "sub_cam.nii.gz", "sub_cam01.nii.gz"]
    row = json.loads(Path(f"{prefix}_bbox.json").read_text())
    assert row["fa"] == str(files["fa"]) and row["input"] == str(files["fa"])


def test_default_box_threshold_is_20_percent_of_the_maximum(files, tmp_path):
    """Without --threshold the box is the largest component above 20% of the CAM's maximum. The FA
    holds a graded blob, so that the boxes at 15% and 25% differ from the one at 20%."""
    from hcp_cam.cam.bbox import bounding_box

    idx = np.indices(SHAPE).transpose(1, 2, 3, 0)
    blob = np.exp(-np.sum((idx - np.array([3, 4, 3])) ** 2, -1) / (2 * 2.5**2))
    fa = np.where(files["mask_array"], 0.1 + 0.8 * blob, 0).astype(np.float32)
    fa_p = _save(fa, files["affine"], tmp_path / "blob_fa.nii.gz")
    prefix = tmp_path / "d"
    argv = ["cam", "--checkpoint", str(files["ckpt"]), str(fa_p), "--out", str(prefix), "--slices", "all"]
    assert main([*argv, "--no-figure"]) == 0
    row = json.loads(Path(f"{prefix}_bbox.json").read_text())
    raw = nib.load(f"{prefix}_cam.nii.gz").get_fdata().astype(np.float32)
    known = raw != 0  # unknown voxels are 0, scored below every known value
    scored = np.where(known, raw, min(0.0, float(raw[known].min())))
    boxes = {f: bounding_box(scored, fraction=f).to_dict() for f in (0.15, 0.2, 0.25)}
    assert boxes[0.15] != boxes[0.2] != boxes[0.25]  # the threshold matters on this map
    assert row["threshold_fraction"] == 0.2 and row["box"] == boxes[0.2]
    assert row["method"] == "cam" and row["coverage"] == "all" and row["cam_class"] == row["predicted"]
