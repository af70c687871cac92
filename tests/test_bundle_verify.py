"""Model-zoo checks of ``bundles/cam_dmri``: metadata schema, network in/out, TorchScript export, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_helpers import BUNDLE, CONFIGS, REPO_ROOT, bundle_env

from hcp_cam.networks import available_networks, get_network
from hcp_cam.training.checkpoints import check_model_checkpoint

SCHEMA_NAME = "meta_schema_20240725.json"
REQUIRED = (
    "configs/metadata.json",
    "configs/inference.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
    "models/model.pt",
)
# the bundle's own default output and cache folders (git-ignored), not part of what ships
NOT_SHIPPED = {".cache", "runs"}
MAX_BYTES = 25 * 1024 * 1024


def _schema() -> Path:
    """MONAI's schema: ``../shared/monai`` beside the repository, else a vendored copy in tests/data."""
    for candidate in (
        REPO_ROOT.parent / "shared" / "monai" / SCHEMA_NAME,
        Path(__file__).parent / "data" / SCHEMA_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise AssertionError(f"{SCHEMA_NAME} is neither in ../shared/monai nor in tests/data: vendor a copy")


def _monai_bundle(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monai.bundle", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=bundle_env(), capture_output=True, text=True, timeout=600)


def _shipped_files() -> list[Path]:
    return [
        p for p in BUNDLE.rglob("*") if p.is_file() and not NOT_SHIPPED & set(p.relative_to(BUNDLE).parts[:1])
    ]


# the network is defined once, in train.json (inference.json is an overlay of it), so the
# model-zoo checks take it from there: model-zoo's ci/bundle_custom_data.py entry
# {"cam_dmri": {"net_id": "network_def", "config_file": "configs/train.json"}}
NET_CONFIG = CONFIGS / "train.json"


def _network_defaults() -> dict:
    return json.loads(NET_CONFIG.read_text())


def test_verify_metadata_against_monai_schema():
    proc = _monai_bundle(
        "verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(_schema())
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "metadata is verified with no error" in proc.stdout + proc.stderr


def test_verify_net_in_out_command_line_inception_v3():
    """The largest minimum input of the five networks, through the user's command line."""
    proc = _monai_bundle(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        str(NET_CONFIG),
        "--bundle_root",
        str(BUNDLE),
        "--arch",
        "inception_v3",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "data shape of network is verified with no error" in proc.stdout + proc.stderr


@pytest.mark.parametrize("arch", available_networks())
def test_verify_net_in_out_every_arch_with_shipped_metadata_shape(arch):
    """MONAI's own ``verify_net_in_out`` in-process, with the metadata's input shape unchanged."""
    from monai.bundle import verify_net_in_out

    meta = json.loads((CONFIGS / "metadata.json").read_text())
    shape = meta["network_data_format"]["inputs"]["image"]["spatial_shape"]
    net = get_network(arch, width=_network_defaults()["network_width"])
    assert min(shape) >= net.min_input_size, (
        f"metadata input {shape} is below {arch}'s minimum {net.min_input_size}"
    )
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(NET_CONFIG),
        bundle_root=str(BUNDLE),
        arch=arch,
    )


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*is deprecated:DeprecationWarning")
def test_ckpt_export_torchscript_matches_eager(tmp_path):
    cfg = _network_defaults()
    net = get_network(
        cfg["arch"],
        spatial_dims=cfg["spatial_dims"],
        num_classes=cfg["num_classes"],
        width=cfg["network_width"],
        dropout=cfg["dropout"],
        batch_norm=cfg["batch_norm"],
    )
    shipped = BUNDLE / "models" / "model.pt"
    if shipped.is_file():
        check_model_checkpoint(shipped, net)  # the shipped weights fit the bundle's network
        ckpt = shipped
    else:  # until the real weights ship: export freshly initialised ones
        ckpt = tmp_path / "model.pt"
        torch.save(net.state_dict(), ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    net.load_state_dict(state.get("model", state))
    ts_path = tmp_path / "model.ts"
    proc = _monai_bundle(
        "ckpt_export",
        "network_def",
        "--filepath",
        str(ts_path),
        "--ckpt_file",
        str(ckpt),
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        str(NET_CONFIG),
        "--bundle_root",
        str(BUNDLE),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    scripted = torch.jit.load(str(ts_path), map_location="cpu")
    x = torch.randn(2, 1, cfg["image_size"], cfg["image_size"], generator=torch.Generator().manual_seed(0))
    net.eval()
    scripted.eval()
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)


def test_required_files_exist():
    missing = [name for name in REQUIRED if not (BUNDLE / name).is_file()]
    assert not missing, f"bundles/cam_dmri lacks {missing}"


def test_every_json_is_four_space_indented():
    files = [p for p in _shipped_files() if p.suffix == ".json"]
    assert len(files) >= 5
    for path in files:
        text = path.read_text()
        assert json.dumps(json.loads(text), indent=4) + "\n" == text, (
            f"{path} is not json.dumps(indent=4) + newline"
        )


def test_no_file_over_25_mb():
    big = {
        str(p.relative_to(BUNDLE)): p.stat().st_size for p in _shipped_files() if p.stat().st_size > MAX_BYTES
    }
    assert not big, big


def test_metadata_version_is_in_changelog():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"], (meta["version"], list(meta["changelog"]))
