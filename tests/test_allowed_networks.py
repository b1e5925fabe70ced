"""Which networks a file may name: the project's, the command's own, and those the user allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from crafted_checkpoints import users_network_module
from resnet_cifar.allowed_networks import ENVIRONMENT_VARIABLE, AllowedNetworks, build_network
from resnet_cifar.errors import UntrustedConfig
from resnet_cifar.train import compose_config

pytestmark = pytest.mark.usefixtures("no_networks_allowed_from_outside")
PAPERS = {
    "_target_": "resnet_cifar.models.cifar_resnet",
    "depth": 8,
    "shortcut": "A",
    "residual": True,
    "num_classes": 10,
}
REFUSED = (
    "builtins.open",  # creates or truncates any file
    "shutil.copyfile",  # overwrites one
    "torch.load",  # unpickles one (weights_only=False)
    "torch.optim.SGD",  # allowed nowhere as a network
    "lightning.pytorch.Trainer",
    "resnet_cifar.files.atomic_write",  # the project's, but not a network
    "resnet_cifar.models.resnet.torch.load",  # torch.load, reached through a module that imports torch
    "resnet_cifar.models.cifar_resnet.__globals__",
    "not a name",
)


@pytest.fixture
def my_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's own package of networks, importable as ``my_lab_nets``."""
    users_network_module(tmp_path, "my_lab_nets", monkeypatch, imports="import shutil\n\n")
    return "my_lab_nets"


def test_the_projects_networks_are_allowed_and_built_from_their_settings() -> None:
    assert AllowedNetworks.default().refusal("resnet_cifar.models.cifar_resnet") is None
    net = build_network(PAPERS, AllowedNetworks.default(), "checkpoint x")
    assert sum(p.numel() for p in net.parameters()) == 75_290  # ResNet-8


@pytest.mark.parametrize("target", REFUSED)
def test_anything_else_is_refused_before_it_is_imported(target: str) -> None:
    with pytest.raises(UntrustedConfig, match=r"checkpoint x holds the network .*; nothing was built"):
        build_network({**PAPERS, "_target_": target}, AllowedNetworks.default(), "checkpoint x")


def test_a_trusted_prefix_allows_only_what_is_defined_below_it(my_lab: str) -> None:
    allowed = AllowedNetworks.default([my_lab])
    assert allowed.refusal("my_lab_nets.wide") is None
    # Names below the prefix that lead elsewhere: what the module imported, a module, internals.
    for target in ("my_lab_nets.shutil.copyfile", "my_lab_nets.cifar_resnet", "my_lab_nets.shutil"):
        assert "by name but is" in allowed.refusal(target), target
    assert "special attribute" in allowed.refusal("my_lab_nets.wide.__globals__")
    assert "cannot be imported" in allowed.refusal("my_lab_nets.missing")
    assert allowed.refusal("my_lab_netsX.wide") is not None  # a prefix ends at a dot
    # Named exactly, a network is trusted without looking at it.
    assert AllowedNetworks.default(["my_lab_nets.shutil.copyfile"]).refusal("my_lab_nets.shutil.copyfile") is None


def test_the_environment_variable_adds_networks_and_prefixes(my_lab: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "other.Net, my_lab_nets.*")
    allowed = AllowedNetworks.default()
    assert allowed.entries == ("other.Net", "my_lab_nets")
    assert allowed.refusal("my_lab_nets.wide") is None and allowed.refusal("other.Net") is None


def test_a_command_allows_its_own_network_and_trusted_targets(my_lab: str, tmp_path: Path) -> None:
    cfg = compose_config(["model._target_=their_lab.Net", "trusted_targets=[my_lab_nets]"], output_dir=tmp_path)
    allowed = AllowedNetworks.of_command(cfg)
    assert allowed.refusal("their_lab.Net") is None  # named by the command itself
    assert allowed.refusal("my_lab_nets.wide") is None
    assert allowed.refusal("builtins.open") is not None


def test_a_users_network_is_built_with_its_typed_settings(my_lab: str) -> None:
    allowed = AllowedNetworks.default([my_lab])
    assert build_network({**PAPERS, "_target_": "my_lab_nets.wide"}, allowed, "x").fc.out_features == 10
    with pytest.raises(UntrustedConfig, match=r"x: network setting depth=8\.5 is not of the type int"):
        build_network({**PAPERS, "_target_": "my_lab_nets.wide", "depth": 8.5}, allowed, "x")


def test_keys_from_the_file_are_shown_escaped() -> None:
    with pytest.raises(UntrustedConfig) as refused:
        build_network({**PAPERS, "_target_": "a\x1b[31m"}, AllowedNetworks.default(), "x")
    assert "'a\\x1b[31m'" in str(refused.value) and "\x1b" not in str(refused.value)
