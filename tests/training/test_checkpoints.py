"""Checkpoints of an earlier layout are refused with one message, not resumed wrongly."""

import pytest
import torch

from resnet_cifar.errors import CheckpointError
from resnet_cifar.training.checkpoints import check_same_model, read_checkpoint

MODEL = {"depth": 20, "shortcut": "A", "residual": True, "num_classes": 10}


def test_a_checkpoint_without_the_module_config_is_refused(tmp_path) -> None:
    # Written before the module/ configs, when the steps were counted by a manual loop: resumed as
    # it is, Lightning would start again at step 0.
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}, "global_step": 500, "hyper_parameters": {"run_config": {"model": MODEL}}}, path)
    with pytest.raises(CheckpointError, match="older than its module/ configs .* train again"):
        check_same_model(read_checkpoint(path), path, MODEL)
    torch.save({"state_dict": {}, "hyper_parameters": {"run_config": {"model": MODEL, "module": {}}}}, path)
    check_same_model(read_checkpoint(path), path, MODEL)
