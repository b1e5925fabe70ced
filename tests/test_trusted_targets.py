"""What a config read from a file may name: the allow-list, the user's additions, interpolations."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from crafted_checkpoints import users_network_module
from resnet_cifar.errors import UntrustedConfig
from resnet_cifar.train import compose_config
from resnet_cifar.trusted_targets import (
    ENVIRONMENT_VARIABLE,
    TrustedTargets,
    check_file_config,
    load_without_resolvers,
)

ALLOWED = (
    "resnet_cifar.models.cifar_resnet",  # conf/model/resnet.yaml
    "resnet_cifar.training.callbacks.LrWarmupUntilTrainError",  # conf/experiment/resnet110.yaml
    "torch.optim.AdamW",
    "torch.optim.adamw.AdamW",  # the same class by its module's name
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "lightning.pytorch.Trainer",
    "lightning.pytorch.callbacks.EarlyStopping",
    "lightning.pytorch.loggers.CSVLogger",
    "lightning.pytorch.plugins.environments.SLURMEnvironment",
    "lightning.pytorch.plugins.precision.MixedPrecision",
)
REFUSED = (
    "builtins.open",  # creates or truncates any file
    "shutil.copyfile",  # overwrites one
    "torch.load",  # unpickles one (weights_only=False)
    "os.system",
    "resnet_cifar.files.atomic_write",  # the project's, but no config of it names it
    "torch.optim.lr_scheduler.torch.load",  # torch.load, reached through a module that imports torch
    "lightning.pytorch.callbacks.ModelCheckpoint.__init__.__globals__",
)


@pytest.fixture
def my_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's own package of networks, importable as ``my_lab_nets``."""
    users_network_module(tmp_path, "my_lab_nets", monkeypatch, imports="import shutil\n\n")
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    return "my_lab_nets"


@pytest.mark.parametrize("target", ALLOWED)
def test_conf_torch_optim_and_lightning_targets_are_allowed(target: str) -> None:
    assert TrustedTargets.default().refusal(target) is None


@pytest.mark.parametrize("target", REFUSED)
def test_other_callables_are_refused(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    assert TrustedTargets.default().refusal(target) is not None


def test_the_refusal_names_key_target_and_how_to_allow_it() -> None:
    config = {"trainer": {"plugins": [{"_target_": "builtins.open", "file": "x", "mode": "w"}]}}
    with pytest.raises(UntrustedConfig) as refused:
        check_file_config(config, "checkpoint x.ckpt", TrustedTargets.default())
    message = str(refused.value)
    assert "checkpoint x.ckpt names trainer.plugins[0]._target_='builtins.open'" in message
    assert "trusted_targets=[builtins.open]" in message and f"{ENVIRONMENT_VARIABLE}=builtins.open" in message


def test_a_trusted_prefix_allows_only_what_is_defined_below_it(my_lab: str) -> None:
    trusted = TrustedTargets.default([my_lab])
    assert trusted.refusal("my_lab_nets.wide") is None
    # Names below the prefix that lead elsewhere: what the module imported, a module, internals.
    for target in ("my_lab_nets.shutil.copyfile", "my_lab_nets.cifar_resnet", "my_lab_nets.shutil"):
        assert "by name but is" in trusted.refusal(target), target
    assert "special attribute" in trusted.refusal("my_lab_nets.wide.__globals__")
    assert "cannot be imported" in trusted.refusal("my_lab_nets.missing")
    assert trusted.refusal("my_lab_netsX.wide") is not None  # a prefix ends at a dot
    # Named exactly, a target is trusted without looking at it.
    assert TrustedTargets.default(["my_lab_nets.shutil.copyfile"]).refusal("my_lab_nets.shutil.copyfile") is None


def test_the_environment_variable_adds_targets_and_prefixes(my_lab: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "other.Net, my_lab_nets.*")
    trusted = TrustedTargets.default()
    assert trusted.entries == ("other.Net", "my_lab_nets")
    assert trusted.refusal("my_lab_nets.wide") is None and trusted.refusal("other.Net") is None


def test_a_command_trusts_its_targets_and_trusted_targets(my_lab: str, tmp_path: Path) -> None:
    cfg = compose_config(["model._target_=their_lab.Net", "trusted_targets=[my_lab_nets]"], output_dir=tmp_path)
    trusted = TrustedTargets.of_command(cfg)
    assert trusted.refusal("their_lab.Net") is None  # named by the command itself
    assert trusted.refusal("my_lab_nets.wide") is None
    assert trusted.refusal("builtins.open") is not None


def test_an_interpolation_in_a_file_config_is_refused_unresolved() -> None:
    calls = []
    OmegaConf.register_new_resolver("recorded", lambda value: calls.append(value) or value, replace=True)
    for value in ("${oc.env:HOME}", "${recorded:x}", "${model.depth}", "a/${oc.env:USER}/b"):
        with pytest.raises(UntrustedConfig, match=r"interpolation at data\.root: .*saved resolved"):
            check_file_config(
                {"model": {"depth": 8}, "data": {"root": value}}, "checkpoint x", TrustedTargets.default()
            )
    assert not calls


def test_a_run_folders_config_is_read_without_its_resolvers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_SECRET", "hunter2")
    calls = []
    OmegaConf.register_new_resolver("recorded", lambda value: calls.append(value) or value, replace=True)
    path = tmp_path / "config.yaml"
    path.write_text(
        "seed: 3\n"
        "data:\n  seed: ${seed}\n  dataset: ${oc.env:A_SECRET}\n  root: ${recorded:x}\n"
        "  padding: ${${oc.env:A_SECRET}}\n  val_size: ${oc.decode:'${oc.env:A_SECRET}'}\n"
    )
    cfg = load_without_resolvers(path)
    assert cfg.data.seed == 3  # node interpolations still resolve
    for key in ("dataset", "root", "padding", "val_size"):
        assert OmegaConf.is_missing(cfg.data, key), key
    assert "hunter2" not in str(OmegaConf.to_container(cfg, resolve=False)) and not calls


def test_keys_from_the_file_are_checked_and_shown_escaped() -> None:
    with pytest.raises(UntrustedConfig) as refused:
        check_file_config({"a\x1b[31m": {"_target_": "os.system"}}, "checkpoint x", TrustedTargets.default())
    assert "names 'a\\x1b[31m._target_'='os.system'" in str(refused.value) and "\x1b" not in str(refused.value)
