"""Finding and loading checkpoints: the latest by epoch number, one-line refusals of files that are
not safe to load, and resume restoring the optimizer's state, on a real MONAI trainer."""

from __future__ import annotations

import argparse
import copy
import pickle
import warnings

import pytest
import torch
import torch.nn as nn
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from hcp_cam.errors import ConfigError
from hcp_cam.training.checkpoints import (
    AtomicCheckpointSaver,
    attach_resume,
    latest_checkpoint,
    load_checkpoint,
)


def test_latest_checkpoint_is_chosen_by_epoch_number_not_text_order(tmp_path):
    """ "checkpoint_epoch=9.pt" sorts after "checkpoint_epoch=10.pt" as text."""
    for name in ("checkpoint_epoch=9.pt", "checkpoint_epoch=10.pt", "checkpoint_epoch=2.pt", "model.pt"):
        torch.save({"epoch": 0}, tmp_path / name)
    (tmp_path / ".checkpoint_epoch=99.pt.tmp").write_bytes(b"")  # a save in progress is not a checkpoint
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=10.pt"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_checkpoint_of_pickled_objects_is_refused_in_one_line_not_called_corrupt(tmp_path):
    """weights_only loading refuses a file holding other Python objects; the message used to call it
    corrupt, advise deleting it, and quote torch's multi-line message with its ANSI escapes."""
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=0.1)}, path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message == (
        f"checkpoint {path} holds pickled Python objects (argparse.Namespace) besides tensors, which safe "
        "loading (torch.load with weights_only=True) refuses because unpickling can run code; it was left "
        "as it is: pass a file of tensors only (torch.save(network.state_dict(), path), as hcp-cam training "
        "writes), or re-save this one that way if you trust its source"
    )
    assert "\n" not in message and "\x1b" not in message and "corrupt" not in message
    assert path.read_bytes() == before


def test_plain_pickle_truncated_and_non_dict_checkpoints_get_one_line_each(tmp_path):
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))
    full = tmp_path / "full.pt"
    torch.save({"w": torch.zeros(3)}, full)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(full.read_bytes()[:100])
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    cases = {
        plain: "is pickled in a form that safe loading (torch.load with weights_only=True) refuses",
        truncated: "is truncated, corrupt or not a PyTorch file (RuntimeError: PytorchStreamReader failed",
        listed: "holds a list, expected a dict of tensors",
        tmp_path / "none.pt": "does not exist",
    }
    for path, expected in cases.items():
        with warnings.catch_warnings(), pytest.raises(ConfigError) as err:
            warnings.simplefilter("ignore", UserWarning)  # torch: "Detected pickle protocol 4"
            load_checkpoint(path)
        message = str(err.value)
        assert message.startswith(f"checkpoint {path} ") and expected in message, message
        assert "\n" not in message and "\x1b" not in message
    assert load_checkpoint(full)["w"].shape == (3,)


def _trainer(max_epochs: int) -> tuple[SupervisedTrainer, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    batches = [
        {"image": torch.randn(4, 6, generator=g), "label": torch.randint(0, 2, (4,), generator=g)}
        for _ in range(3)
    ]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=max_epochs, train_data_loader=batches, network=network,
        optimizer=optimizer, loss_function=nn.CrossEntropyLoss(),
    )  # fmt: skip
    return trainer, network, optimizer


def test_resume_restores_the_optimizer_state_not_only_the_epoch(tmp_path):
    """The optimizer's state when the first resumed iteration starts is the checkpoint's (Adam's
    moments and step count), not a fresh optimizer's, and the epoch counter continues."""
    first, network, optimizer = _trainer(max_epochs=2)
    save = {"model": network, "optimizer": optimizer, "trainer": first}
    AtomicCheckpointSaver(str(tmp_path), save_dict=save, save_interval=1, n_saved=2, epoch_level=True).attach(
        first
    )
    first.run()
    ckpt = tmp_path / "checkpoint_epoch=2.pt"
    saved = torch.load(ckpt, weights_only=True)

    second, network2, optimizer2 = _trainer(max_epochs=3)
    seen: dict = {}

    def capture(engine):
        if not seen:
            seen.update(epoch=engine.state.epoch, iteration=engine.state.iteration,
                        optimizer=copy.deepcopy(optimizer2.state_dict()), model=copy.deepcopy(network2.state_dict()))  # fmt: skip

    second.add_event_handler(Events.ITERATION_STARTED, capture)
    resumed = attach_resume(
        second, tmp_path, {"model": network2, "optimizer": optimizer2, "trainer": second}, True
    )
    assert resumed == ckpt
    second.run()

    assert seen["epoch"] == 3 and seen["iteration"] == saved["trainer"]["iteration"] + 1 == 7
    state, expected = seen["optimizer"]["state"], saved["optimizer"]["state"]
    assert sorted(state) == sorted(expected) and len(expected) == 4
    for idx, moments in expected.items():
        assert float(moments["step"]) == 6.0
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(state[idx][key], moments[key], rtol=0, atol=0)
    assert seen["optimizer"]["param_groups"][0]["lr"] == saved["optimizer"]["param_groups"][0]["lr"]
    for name, value in saved["model"].items():
        torch.testing.assert_close(seen["model"][name], value, rtol=0, atol=0)
    # and the optimizer went on from there: 3 more steps on top of the checkpoint's 6
    assert all(float(s["step"]) == 9.0 for s in optimizer2.state_dict()["state"].values())


def test_resume_without_a_checkpoint_starts_from_epoch_one(tmp_path):
    trainer, network, optimizer = _trainer(max_epochs=1)
    assert attach_resume(trainer, tmp_path / "none", {"model": network}, True) is None
    assert attach_resume(trainer, tmp_path, {"model": network}, False) is None
