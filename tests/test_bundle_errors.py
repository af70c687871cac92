"""Bad input to the bundle's training run: non-zero exit, a message naming the problem, nothing written."""

from __future__ import annotations

import shutil

import pandas as pd
from bundle_helpers import CONFIGS, TinyData, output_of, run_bundle, tree_snapshot

from hcp_cam.networks import available_networks, get_network

TRAIN = CONFIGS / "train.json"
# files that mean a run started training
TRAINING_OUTPUTS = ("checkpoints", "metrics", "tensorboard", "figures")


def _assert_one_line_exit_2(proc):
    """Bad input ends a bundle run as it ends the command line: exit 2, one error line, no traceback."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cam_dmri bundle: error: ")]
    assert proc.returncode == 2 and len(errors) == 1, output_of(proc)[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _assert_no_training_outputs(out):
    written = [name for name in TRAINING_OUTPUTS if (out / name).exists() and any((out / name).rglob("*"))]
    assert not written, f"a failed run wrote {written} in {out}"


def test_unknown_arch_lists_valid_names_and_writes_nothing(tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = run_bundle("training", TRAIN, out, tiny_data, {"arch": "foo"})
    text = output_of(proc)
    _assert_one_line_exit_2(proc)
    assert "unknown network 'foo'" in text, text[-3000:]
    assert all(name in text for name in available_networks()), text[-3000:]
    assert not out.exists(), tree_snapshot(out).keys()


def test_image_size_below_minimum_states_it_before_writing(tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = run_bundle("training", TRAIN, out, tiny_data, {"image_size": 8})
    text = output_of(proc)
    minimum = get_network("alexnet", width=0.125).min_input_size
    _assert_one_line_exit_2(proc)
    assert f"image_size 8 is too small for alexnet: the minimum is {minimum}" in text, text[-3000:]
    assert not out.exists(), tree_snapshot(out).keys()


def test_missing_dataset_dir_is_an_error_not_the_demo(tiny_data, tmp_path):
    out = tmp_path / "run"
    cache = tmp_path / "cache"
    data = TinyData(dataset_dir=tmp_path / "nonexistent", cache_dir=cache)
    proc = run_bundle("training", TRAIN, out, data)
    text = output_of(proc)
    _assert_one_line_exit_2(proc)
    assert f"dataset_dir '{tmp_path / 'nonexistent'}' does not exist" in text, text[-3000:]
    assert not list(cache.glob("demo*")), "fell back to generating the demo data"
    _assert_no_training_outputs(out)


def test_dataset_without_participants_table(tmp_path):
    root = tmp_path / "data"
    (root / "100307" / "T1w" / "Diffusion").mkdir(parents=True)
    out = tmp_path / "run"
    proc = run_bundle("training", TRAIN, out, TinyData(root, tmp_path / "cache"))
    text = output_of(proc)
    _assert_one_line_exit_2(proc)
    assert "has no participants.csv or participants.tsv" in text and str(root) in text, text[-3000:]
    _assert_no_training_outputs(out)


def test_single_age_group_cannot_be_split(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data.dataset_dir, root)
    table = pd.read_csv(root / "participants.csv", dtype={"subject": str})
    table["age"], table["group"] = 40, "old"
    table.to_csv(root / "participants.csv", index=False)
    out = tmp_path / "run"
    proc = run_bundle("training", TRAIN, out, TinyData(root, tiny_data.cache_dir))
    text = output_of(proc)
    _assert_one_line_exit_2(proc)
    assert "group 'young' has 0 subject(s)" in text, text[-3000:]
    _assert_no_training_outputs(out)


def test_output_dir_of_another_configuration_is_refused(trained_run, tiny_data, tmp_path):
    src, train_proc = trained_run
    assert train_proc.returncode == 0, output_of(train_proc)[-3000:]
    out = tmp_path / "run"
    shutil.copytree(src, out)
    before = tree_snapshot(out)
    proc = run_bundle("training", TRAIN, out, tiny_data, {"arch": "vgg16"})
    text = output_of(proc)
    _assert_one_line_exit_2(proc)
    assert "holds a run of a different configuration (arch: 'alexnet' -> 'vgg16')" in text, text[-3000:]
    assert tree_snapshot(out) == before  # nothing rewritten, nothing added

    fresh = tmp_path / "vgg16"
    proc = run_bundle("training", TRAIN, fresh, tiny_data, {"arch": "vgg16", "epochs": 1})
    assert proc.returncode == 0, output_of(proc)[-3000:]
    assert (fresh / "checkpoints" / "checkpoint_epoch=1.pt").is_file()


def test_3d_training_that_would_run_zero_batches_is_refused_not_exit_0(tiny_data, tmp_path):
    """6 training volumes and batch_size 16 with drop_last: MONAI warned "dataloader is empty",
    skipped training and the bundle exited 0 without a checkpoint."""
    out = tmp_path / "run"
    proc = run_bundle("training", TRAIN, out, tiny_data, {"spatial_dims": 3, "batch_size": 16})
    text = output_of(proc)
    _assert_one_line_exit_2(proc)
    assert (
        "the training split's 6 volume(s) make no batch of batch_size 16 (drop_last drops the last partial "
        "batch, so the run would train nothing and write no checkpoint): use --batch_size 6 or less"
    ) in text, text[-3000:]
    assert "dataloader` is empty" not in text
    _assert_no_training_outputs(out)
    assert not (out / "config.json").exists()


def test_negative_image_size_is_a_config_error_naming_the_key_before_writing(tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = run_bundle("training", TRAIN, out, tiny_data, {"image_size": -5})
    text = output_of(proc)
    _assert_one_line_exit_2(proc)
    assert "cam_dmri bundle: error: image_size must be a whole number of voxels >= 1" in text, text[-3000:]
    assert "got -5" in text and not out.exists()
