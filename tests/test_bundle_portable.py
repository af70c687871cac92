"""The portable bundle: wheel and sdist, one version number, the model zoo's CI steps, and a copied,
read-only bundle folder run from another working directory with only the built wheel installed.

"Only the wheel": the fresh venv gets hcp-cam from the wheel built here and nothing from the
checkout. Its other dependencies (torch, MONAI, DIPY...) come from a folder of links to this venv's
installed packages *without* hcp-cam (its editable finder, its ``.pth`` and its dist-info are left
out), added by a ``.pth`` file: a base without hcp-cam, as ``--system-site-packages`` would give one,
at no install time. The run's ``PYTHONPATH`` is empty and its working directory is outside the
checkout; the test asserts ``hcp_cam`` imports from the fresh venv and no checkout path is on
``sys.path``. Running as root, permission bits would not stop a write: the bundle copy is compared
file by file (and folder by folder) before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import HeaderParser
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import tomllib
from bundle_helpers import BUNDLE, REPO_ROOT, TINY

import hcp_cam

SCHEMA = REPO_ROOT / "tests" / "data" / "meta_schema_20240725.json"
# model-zoo's ci/bundle_custom_data.py entry: the network is defined in train.json
NET_ID, NET_CONFIG = "network_def", "configs/train.json"
_IGNORE_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "runs",
    ".cache",
)


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 600)
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """``python -m build`` (wheel and sdist) of a copy of the checkout: the checkout gets no build/ folder."""
    root = tmp_path_factory.mktemp("build")
    src = root / "src"
    shutil.copytree(REPO_ROOT, src, ignore=_IGNORE_SOURCE, symlinks=True)
    out = root / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src])
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "dir": out}


def _metadata() -> dict:
    return json.loads((BUNDLE / "configs" / "metadata.json").read_text())


def test_one_version_number():
    """The package's version is the one pyproject builds, the installed one, and the one the bundle requires."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "hcp_cam.__version__"}
    assert _metadata()["required_packages_version"]["hcp-cam"] == hcp_cam.__version__
    assert installed_version("hcp-cam") == hcp_cam.__version__, "reinstall: make install"


def test_wheel_and_sdist_pass_twine_check_and_the_wheel_holds_every_module(dist):
    proc = _run([sys.executable, "-m", "twine", "check", "--strict", dist["wheel"], dist["sdist"]])
    assert proc.stdout.count("PASSED") == 2, proc.stdout
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    expected = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "hcp_cam").rglob("*.py")}
    expected |= {"hcp_cam/transforms/" + p.relative_to(REPO_ROOT / "transforms").as_posix()
                 for p in (REPO_ROOT / "transforms").rglob("*.py")}  # fmt: skip
    missing = sorted(expected - names)
    assert not missing, (
        f"modules of the checkout missing from the wheel (add their package to pyproject): {missing}"
    )
    meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = HeaderParser().parsestr(zipfile.ZipFile(dist["wheel"]).read(meta_name).decode())
    assert meta["Version"] == hcp_cam.__version__ and meta["License-Expression"] == "Apache-2.0"
    assert any(r.startswith("pybids") for r in meta.get_all("Requires-Dist"))
    assert dist["sdist"].name == f"hcp_cam-{hcp_cam.__version__}.tar.gz"


def bundle_requirements(metadata: dict) -> list[str]:
    """The requirement lines the model zoo's ``ci/get_bundle_requirements.py`` writes from metadata.json:
    ``monai==``, ``torch==``, ``numpy==``, then every ``required_packages_version`` entry."""
    lines = [f"monai=={metadata['monai_version']}", f"torch=={metadata['pytorch_version']}"]
    lines.append(f"numpy=={metadata['numpy_version']}")
    for name, v in {
        **metadata.get("optional_packages_version", {}),
        **metadata["required_packages_version"],
    }.items():
        v = v.strip()
        lines.append(f"{name}{v}" if v[0] in "<>=" else f"{name}=={v}")
    return lines


def test_metadata_requires_every_dependency_of_the_package():
    """What the bundle needs: every runtime dependency of pyproject is pinned in metadata.json
    (isal excepted: an optional speed-up that hcp-cam works without)."""
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in deps}
    pinned = {
        line.split("=")[0].split("<")[0].split(">")[0].lower() for line in bundle_requirements(_metadata())
    }
    assert names - {"isal"} <= pinned, sorted(names - pinned)
    assert "hcp-cam" in pinned and "pybids" in pinned


def _base_without_hcp_cam(tmp: Path) -> Path:
    """A folder of links to this environment's installed packages, hcp-cam's own files left out."""
    site = Path(sysconfig.get_paths()["purelib"])
    base = tmp / "base-site-packages"
    base.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("hcp_cam", "hcp-cam", "__editable__")) or name.endswith(".pth"):
            continue
        (base / entry.name).symlink_to(entry)
    return base


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_copied_read_only_bundle_runs_from_another_folder_with_only_the_wheel(dist, tmp_path):
    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    fresh_site = Path(
        _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    (fresh_site / "_base.pth").write_text(f"{_base_without_hcp_cam(tmp_path)}\n")
    pip = [sys.executable, "-m", "pip", "--python", py, "--disable-pip-version-check"]
    # the wheel, and nothing else, from the local folder (the model zoo's CI: "once the wheel is on the index")
    _run(
        [
            *pip,
            "install",
            "--no-index",
            "--no-deps",
            "--find-links",
            dist["dir"],
            f"hcp-cam=={hcp_cam.__version__}",
        ]
    )
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(bundle_requirements(_metadata())) + "\n")
    _run([*pip, "install", "--find-links", dist["dir"], "-r", requirements])
    _run([*pip, "check"])

    bundle = tmp_path / "elsewhere" / "cam_dmri"
    shutil.copytree(BUNDLE, bundle, symlinks=True, ignore=shutil.ignore_patterns("runs", ".cache"))
    for p in [bundle, *bundle.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _snapshot(bundle)
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(tmp_path / "mpl"), "TQDM_DISABLE": "1"})  # fmt: skip

    where = _run(
        [py, "-c", "import hcp_cam, hcp_cam.data.bids, sys; print(hcp_cam.__file__); print(repr(sys.path))"],
        cwd=work, env=env,
    )  # fmt: skip
    module_file, path_repr = where.stdout.strip().splitlines()
    assert Path(module_file).is_relative_to(venv), module_file
    assert str(REPO_ROOT) not in path_repr

    def monai_bundle(*args: str) -> subprocess.CompletedProcess:
        return _run([py, "-m", "monai.bundle", *args], cwd=work, env=env)

    # model-zoo ci/verify_bundle.py: directory, version and changelog, metadata schema, data shape, TorchScript
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    out = monai_bundle(
        "verify_metadata", "--meta_file", f"{bundle}/configs/metadata.json", "--filepath", str(SCHEMA)
    )
    assert "metadata is verified with no error" in out.stdout + out.stderr
    common = ["--meta_file", f"{bundle}/configs/metadata.json", "--config_file", f"{bundle}/{NET_CONFIG}"]
    out = monai_bundle("verify_net_in_out", NET_ID, *common, "--bundle_root", str(bundle))
    assert "data shape of network is verified with no error" in out.stdout + out.stderr
    ts = tmp_path / "verify_model.ts"  # the model zoo writes it into models/; a read-only copy cannot take it
    monai_bundle("ckpt_export", NET_ID, "--filepath", str(ts), "--ckpt_file", f"{bundle}/models/model.pt", *common,
                 "--bundle_root", str(bundle))  # fmt: skip
    assert ts.stat().st_size > 100_000

    # training on the demo data with every default path: output under the working folder, caches in XDG
    tiny = [f"--{k}={v}" for k, v in {**TINY, "epochs": 1, "demo_subjects": 6}.items()]
    train = monai_bundle("run", "training", "--config_file", f"{bundle}/configs/train.json", *tiny)
    assert "Traceback" not in train.stderr
    run_dir = work / "runs" / "alexnet"
    assert (run_dir / "checkpoints" / "model.pt").is_file() and (run_dir / "datalist.json").is_file()
    cache = tmp_path / "xdg" / "hcp-cam"
    assert list(cache.glob("demo*/participants.csv")) and list((cache / "fa").rglob("*_fa.nii.gz"))
    evaluate = ["--config_file", f"['{bundle}/configs/train.json','{bundle}/configs/evaluate.json']"]
    monai_bundle("run", "evaluating", *evaluate, *tiny)
    assert json.loads((run_dir / "metrics" / "test_metrics.json").read_text())["n_subjects"] == 2
    assert _snapshot(bundle) == before, "something was written inside the bundle copy"
    assert sorted(p.name for p in work.iterdir()) == ["runs"] and not any(home.iterdir())
