"""Checkpoints of an earlier layout are refused with one message, not resumed wrongly; checkpoints
naming code the user did not choose are not resumed at all."""

import errno
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from crafted_checkpoints import files_of, payload, victims
from resnet_cifar.errors import CheckpointError, UntrustedConfig
from resnet_cifar.train import compose_config
from resnet_cifar.training.checkpoints import AtomicCheckpointIO, check_same_model, read_checkpoint
from resnet_cifar.trusted_targets import ENVIRONMENT_VARIABLE
from tiny_runs import TINY_SYNTHETIC_RUN, run_training

MODEL = {"depth": 20, "shortcut": "A", "residual": True, "num_classes": 10}
RUN = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=2")


def test_a_checkpoint_without_the_module_config_is_refused(tmp_path) -> None:
    # Written before the module/ configs, when the steps were counted by a manual loop: resumed as
    # it is, Lightning would start again at step 0.
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}, "global_step": 500, "hyper_parameters": {"run_config": {"model": MODEL}}}, path)
    with pytest.raises(CheckpointError, match="older than its module/ configs .* train again"):
        check_same_model(read_checkpoint(path), path, MODEL)
    torch.save({"state_dict": {}, "hyper_parameters": {"run_config": {"model": MODEL, "module": {}}}}, path)
    check_same_model(read_checkpoint(path), path, MODEL)


@pytest.mark.parametrize("how", ["ckpt_path", "last.ckpt of the run directory"])
def test_resuming_a_checkpoint_naming_other_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A checkpoint of this very run's config, but with a callback that would create a file."""
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    folder = victims(tmp_path / "victims")
    run_dir = tmp_path / "run"
    run_config = OmegaConf.to_container(compose_config(RUN, output_dir=run_dir), resolve=True)
    run_config["callbacks"]["model_checkpoint"] = payload("creates", folder)
    crafted = {"state_dict": {}, "global_step": 1, "hyper_parameters": {"run_config": run_config}}
    if how == "ckpt_path":
        path, overrides = folder / "theirs.ckpt", [f"ckpt_path={folder / 'theirs.ckpt'}"]
    else:  # a run folder from elsewhere, resumed by rerunning a command in it
        path, overrides = run_dir / "checkpoints" / "last.ckpt", []
        path.parent.mkdir(parents=True)
    torch.save(crafted, path)
    before, run_before = files_of(folder), files_of(run_dir)
    with pytest.raises(UntrustedConfig, match=r"names callbacks\.model_checkpoint\._target_='builtins\.open'"):
        run_training(run_dir, *RUN, *overrides)
    assert files_of(folder) == before and files_of(run_dir) == run_before  # no .hydra/, no file created


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)

    def disk_full(obj, file):
        Path(file).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
