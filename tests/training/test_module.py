"""ImageClassifier.load_from_checkpoint reads a file as data, from every place where Lightning takes
a module's arguments: only the network (allowed, typed), torch.optim's optimizer and scheduler and
the class's typed arguments are rebuilt."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from crafted_checkpoints import PAYLOADS, alias_bomb, files_of, payload, plant, users_network_module, victims
from resnet_cifar.errors import CheckpointError, UntrustedConfig
from resnet_cifar.training.module import ImageClassifier
from resnet_cifar.training.whole_step_module import WholeStepClassifier

pytestmark = pytest.mark.usefixtures("no_networks_allowed_from_outside")


def saved(checkpoint: dict[str, Any], path: Path) -> Path:
    torch.save(checkpoint, path)
    return path


def test_a_normal_runs_checkpoint_loads(trained: Path) -> None:
    module = ImageClassifier.load_from_checkpoint(trained)
    weights = torch.load(trained, weights_only=True)["state_dict"]
    assert all(torch.equal(value, weights[key]) for key, value in module.state_dict().items())
    assert module.hparams.optimizer == {
        "_target_": "torch.optim.SGD",
        "_partial_": True,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
    }
    from_file_object = ImageClassifier.load_from_checkpoint(io.BytesIO(trained.read_bytes()))
    assert torch.equal(from_file_object.net.fc.weight, module.net.fc.weight)
    assert torch.equal(WholeStepClassifier.load_from_checkpoint(trained).net.fc.weight, module.net.fc.weight)


def lightning_places(checkpoint: dict[str, Any], node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``checkpoint`` with ``node`` (a config that builds something) as the network in each place
    where Lightning 2.6 takes a module's arguments from."""
    hyper_parameters = checkpoint["hyper_parameters"]
    without = {key: value for key, value in checkpoint.items() if key != "hyper_parameters"}
    return {
        "hyper_parameters": plant(checkpoint, "hyper_parameters.net", node),
        "hparams (older key)": {**without, "hyper_parameters": {}, "hparams": {**hyper_parameters, "net": node}},
        "module_arguments (older key)": {**checkpoint, "module_arguments": {"net": node}, "hyper_parameters": {}},
        "hparams_name": {**checkpoint, "hparams_name": "net", "hyper_parameters": node},
        "_instantiator": plant(checkpoint, "hyper_parameters._instantiator", node["_target_"]),
    }


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize(
    "place",
    ["hyper_parameters", "hparams (older key)", "module_arguments (older key)", "hparams_name", "_instantiator"],
)
def test_code_in_any_place_lightning_reads_is_never_run(trained: Path, tmp_path: Path, place: str, kind: str) -> None:
    folder = victims(tmp_path / "victims")
    checkpoint = torch.load(trained, weights_only=True)
    path = saved(lightning_places(checkpoint, payload(kind, folder))[place], tmp_path / "crafted.ckpt")
    before = files_of(folder)
    if place == "_instantiator":  # not an argument of the class: left out, as Lightning leaves it out
        module = ImageClassifier.load_from_checkpoint(path)
        assert torch.equal(module.net.fc.weight, checkpoint["state_dict"]["net.fc.weight"])
    else:
        with pytest.raises(UntrustedConfig, match=r"holds the network '[\w.]+', which is not one of"):
            ImageClassifier.load_from_checkpoint(path)
    assert files_of(folder) == before


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("form", ["yaml", "csv"])
def test_code_in_an_hparams_file_is_never_run(trained: Path, tmp_path: Path, form: str, kind: str) -> None:
    """Lightning replaces a checkpoint's arguments with an hparams_file's, YAML or its two-column CSV."""
    folder = victims(tmp_path / "victims")
    arguments = {**torch.load(trained, weights_only=True)["hyper_parameters"], "net": payload(kind, folder)}
    hparams = tmp_path / f"hparams.{form}"
    if form == "yaml":
        hparams.write_text(yaml.safe_dump(arguments))
    else:
        hparams.write_text("key,value\n" + "".join(f'{key},"{value!r}"\n' for key, value in arguments.items()))
    before = files_of(folder)
    with pytest.raises(UntrustedConfig, match=r"holds the network '[\w.]+', which is not one of"):
        ImageClassifier.load_from_checkpoint(trained, hparams_file=hparams)
    assert files_of(folder) == before


def test_an_hparams_file_of_yaml_aliases_is_refused_at_once(trained: Path, tmp_path: Path) -> None:
    hparams = tmp_path / "hparams.yaml"
    hparams.write_text(alias_bomb())
    with pytest.raises(CheckpointError, match=r"hparams_file .*holds a YAML alias"):
        ImageClassifier.load_from_checkpoint(trained, hparams_file=hparams)


@pytest.mark.parametrize(
    ("key", "node", "reason"),
    [
        ("optimizer._target_", "builtins.open", "optimizer 'builtins.open' is not one of torch.optim's"),
        ("optimizer._target_", "torch.optim.lr_scheduler.torch.load", "is not one of torch.optim's"),
        ("scheduler._target_", "torch.optim.lr_scheduler.LambdaLR", "is not one of torch.optim's"),
        ("optimizer.lr", {"_target_": "builtins.open", "file": "x"}, "optimizer setting lr is a dict"),
        ("optimizer.params", [1, 2], "params is passed by the module"),
        ("lr_scheduler.interval", "hourly", "lr_scheduler setting interval='hourly' is not one of 'step', 'epoch'"),
        ("channels_last", "yes", "module setting channels_last='yes' is not of the type bool"),
    ],
)
def test_optimizer_scheduler_and_settings_cross_only_as_torch_optims_and_typed(
    trained: Path, tmp_path: Path, key: str, node: Any, reason: str
) -> None:
    path = saved(plant(torch.load(trained, weights_only=True), f"hyper_parameters.{key}", node), tmp_path / "c.ckpt")
    with pytest.raises(CheckpointError, match=reason.replace("(", r"\(")):
        ImageClassifier.load_from_checkpoint(path)


def test_arguments_passed_replace_the_files(trained: Path, tmp_path: Path) -> None:
    """What the caller passes is theirs, and is not read from the file (a refused one included)."""
    checkpoint = plant(torch.load(trained, weights_only=True), "hyper_parameters.optimizer._target_", "my_lab.Lion")
    path = saved(checkpoint, tmp_path / "theirs.ckpt")
    with pytest.raises(CheckpointError, match="pass that argument to load_from_checkpoint yourself"):
        ImageClassifier.load_from_checkpoint(path)
    adam = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}
    assert ImageClassifier.load_from_checkpoint(path, optimizer=adam).hparams.optimizer == adam


def test_a_users_network_loads_through_the_keyword(trained: Path, tmp_path: Path, monkeypatch) -> None:
    users_network_module(tmp_path, "lab_models", monkeypatch)
    checkpoint = plant(torch.load(trained, weights_only=True), "hyper_parameters.net._target_", "lab_models.wide")
    path = saved(checkpoint, tmp_path / "theirs.ckpt")
    with pytest.raises(UntrustedConfig, match=r"holds the network 'lab_models\.wide'"):
        ImageClassifier.load_from_checkpoint(path)
    module = ImageClassifier.load_from_checkpoint(path, trusted_targets=["lab_models"])
    assert torch.equal(module.net.fc.weight, checkpoint["state_dict"]["net.fc.weight"])
