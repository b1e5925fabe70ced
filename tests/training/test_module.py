"""ImageClassifier.load_from_checkpoint builds only what a file may name."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from crafted_checkpoints import (
    HPARAM_KEYS,
    PAYLOADS,
    files_of,
    payload,
    plant,
    users_network_module,
    victims,
    write_crafted,
)
from resnet_cifar.errors import UntrustedConfig
from resnet_cifar.training.module import ImageClassifier

pytestmark = pytest.mark.usefixtures("no_trusted_targets_from_outside")


def test_a_normal_runs_checkpoint_loads(trained: Path) -> None:
    module = ImageClassifier.load_from_checkpoint(trained)
    weights = torch.load(trained, weights_only=True)["state_dict"]
    assert all(torch.equal(value, weights[key]) for key, value in module.state_dict().items())
    from_file_object = ImageClassifier.load_from_checkpoint(io.BytesIO(trained.read_bytes()))
    assert torch.equal(from_file_object.net.fc.weight, module.net.fc.weight)


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("key", HPARAM_KEYS)
def test_code_in_the_hyper_parameters_is_refused_untouched(trained: Path, tmp_path: Path, key: str, kind: str) -> None:
    folder = victims(tmp_path)
    crafted = write_crafted(trained, folder / "crafted.ckpt", key, payload(kind, folder))
    before = files_of(folder)
    with pytest.raises(UntrustedConfig, match=rf"names {key}\._target_="):
        ImageClassifier.load_from_checkpoint(crafted)
    assert files_of(folder) == before


def test_a_users_network_loads_through_the_keyword(trained: Path, tmp_path: Path, monkeypatch) -> None:
    users_network_module(tmp_path, "lab_models", monkeypatch)
    checkpoint = torch.load(trained, weights_only=True)
    checkpoint = plant(
        checkpoint, "hyper_parameters.net", {**checkpoint["hyper_parameters"]["net"], "_target_": "lab_models.wide"}
    )
    torch.save(checkpoint, tmp_path / "theirs.ckpt")
    with pytest.raises(UntrustedConfig, match=r"hyper_parameters\.net\._target_='lab_models\.wide'"):
        ImageClassifier.load_from_checkpoint(tmp_path / "theirs.ckpt")
    module = ImageClassifier.load_from_checkpoint(tmp_path / "theirs.ckpt", trusted_targets=["lab_models"])
    assert torch.equal(module.net.fc.weight, checkpoint["state_dict"]["net.fc.weight"])


def test_the_run_config_is_not_built_and_need_not_be_allowed(trained: Path, tmp_path: Path) -> None:
    """A run with a callback of the user's own: loading its module builds network, optimizer and
    scheduler only."""
    folder = victims(tmp_path)
    crafted = write_crafted(trained, folder / "crafted.ckpt", "callbacks.model_checkpoint", payload("creates", folder))
    before = files_of(folder)
    module = ImageClassifier.load_from_checkpoint(crafted)
    assert module.hparams.run_config["callbacks"]["model_checkpoint"]["_target_"] == "builtins.open"
    assert files_of(folder) == before
