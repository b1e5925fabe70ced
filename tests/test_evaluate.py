"""evaluate with checkpoints from strangers: the file gives weights, its network's settings and its
data settings; the Trainer, callbacks, loggers and output folders are the command's own."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from commands import assert_ok, describe, run_cli, run_command
from crafted_checkpoints import (
    PAYLOADS,
    files_of,
    in_the_layout_before,
    payload,
    plant,
    users_network_module,
    victims,
)
from resnet_cifar.allowed_networks import ENVIRONMENT_VARIABLE
from resnet_cifar.errors import CheckpointError, UntrustedConfig
from resnet_cifar.evaluate import compose_evaluation, evaluate
from resnet_cifar.train import compose_config
from tiny_runs import TINY_SYNTHETIC_RUN

pytestmark = pytest.mark.usefixtures("no_networks_allowed_from_outside")
MY_NET = "lab_nets.wide"


def evaluated(path: Path, *overrides: str) -> dict[str, Any]:
    """``python -m resnet_cifar.evaluate ckpt_path=<path> <overrides>``, in this process."""
    return evaluate(compose_evaluation([f"ckpt_path={path}", *overrides]))


@pytest.fixture(scope="module")
def own_error(trained: Path) -> float:
    return evaluated(trained)["test_err"]


@pytest.fixture(scope="module")
def run_config(trained: Path) -> dict[str, Any]:
    """The composed config of the run behind ``trained``, as the previous release saved it."""
    cfg = compose_config([*TINY_SYNTHETIC_RUN, "trainer.max_steps=2"], output_dir=trained.parent.parent)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture
def my_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder of a user's own network, ``lab_nets.wide`` (the paper's, built by their code),
    importable here."""
    return users_network_module(tmp_path / "my_lab", "lab_nets", monkeypatch)


def crafted(trained: Path, destination: Path, *planted: tuple[str, Any]) -> Path:
    checkpoint = torch.load(trained, weights_only=True)
    for key, node in planted:
        checkpoint = plant(checkpoint, key, node)
    torch.save(checkpoint, destination)
    return destination


def with_my_network(trained: Path, destination: Path) -> Path:
    """``trained``'s checkpoint as if its network had been lab_nets.wide."""
    return crafted(trained, destination, ("hyper_parameters.net._target_", MY_NET))


def test_the_projects_own_checkpoint_is_evaluated(trained: Path, own_error: float) -> None:
    results = evaluated(trained)
    assert results["step"] == 2 and results["test_err"] == own_error
    assert json.loads(trained.with_suffix(".eval.json").read_text()) == results
    assert results["environment"]["device_type"] == "cpu" and results["environment"]["torch"] == torch.__version__


def test_a_checkpoint_of_the_previous_layout_is_evaluated_alike(
    trained: Path, tmp_path: Path, run_config: dict, own_error: float
) -> None:
    older = tmp_path / "older.ckpt"
    torch.save(in_the_layout_before(torch.load(trained, weights_only=True), run_config), older)
    assert evaluated(older)["test_err"] == own_error


def hostile_run_config(run_config: dict, folder: Path, kind: str) -> dict:
    """``run_config`` with everything evaluate once built from it pointed at ``folder``: Lightning's
    own parts with arguments that write there, and ``kind``'s payload wherever a target may stand."""
    hostile = json.loads(json.dumps(run_config))
    hostile["trainer"] |= {
        "default_root_dir": str(folder),
        "profiler": {"_target_": "lightning.pytorch.profilers.SimpleProfiler", "dirpath": str(folder), "filename": "p"},
        "plugins": [payload(kind, folder)],
    }
    hostile["callbacks"] = {
        "every_step": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "dirpath": str(folder)},
        "theirs": payload(kind, folder),
    }
    hostile["logger"] = {
        "csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(folder)},
        "theirs": payload(kind, folder),
    }
    hostile["module"] |= {"_target_": payload(kind, folder)["_target_"]}
    hostile["data"] |= {"_target_": payload(kind, folder)["_target_"], "download": True}
    hostile["paths"] = {"output_dir": str(folder), "checkpoint_dir": str(folder)}
    return hostile


@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_files_trainer_callbacks_and_loggers_are_never_built(
    trained: Path, tmp_path: Path, run_config: dict, own_error: float, kind: str
) -> None:
    folder = victims(tmp_path / "victims")
    checkpoint = in_the_layout_before(
        torch.load(trained, weights_only=True), hostile_run_config(run_config, folder, kind)
    )
    checkpoint["hyper_parameters"]["lr_scheduler"] = payload(kind, folder)
    torch.save(checkpoint, tmp_path / "crafted.ckpt")
    before = files_of(folder)
    assert evaluated(tmp_path / "crafted.ckpt")["test_err"] == own_error
    assert files_of(folder) == before  # nothing created, written, truncated, overwritten or unpickled
    assert sorted(path.name for path in tmp_path.iterdir()) == ["crafted.ckpt", "crafted.eval.json", "victims"]


@pytest.mark.parametrize("kind", PAYLOADS)
def test_a_network_the_user_did_not_allow_is_refused_untouched(trained: Path, tmp_path: Path, kind: str) -> None:
    folder = victims(tmp_path / "victims")
    path = crafted(trained, tmp_path / "crafted.ckpt", ("hyper_parameters.net", payload(kind, folder)))
    before = files_of(folder)
    with pytest.raises(UntrustedConfig) as refused:
        evaluated(path)
    target = payload(kind, folder)["_target_"]
    assert f"holds the network '{target}', which is not one of the project's networks" in str(refused.value)
    assert f"trusted_targets=[{target}]" in str(refused.value) and f"{ENVIRONMENT_VARIABLE}={target}" in str(
        refused.value
    )
    assert files_of(folder) == before and not list(tmp_path.glob("*.eval.json"))


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("depth", {"_target_": "builtins.open", "file": "x", "mode": "w"}, "depth is a dict, not a plain value"),
        ("depth", "8", "depth='8' is not of the type int"),
        ("shortcut", "${oc.env:HOME}", "shortcut='${oc.env:HOME}' holds '${', which would be read as an interpolation"),
        ("_partial_", True, "'_partial_' is not a parameter of resnet_cifar.models.resnet.cifar_resnet"),
        ("block", "basic", "'block' is not a parameter of resnet_cifar.models.resnet.cifar_resnet"),
    ],
)
def test_network_settings_must_fit_the_networks_signature(
    trained: Path, tmp_path: Path, key: str, value: Any, reason: str
) -> None:
    path = crafted(trained, tmp_path / "crafted.ckpt", (f"hyper_parameters.net.{key}", value))
    with pytest.raises(UntrustedConfig, match=re.escape(f"network setting {reason}")):
        evaluated(path)


def test_a_data_folder_the_file_names_is_read_never_written(
    trained: Path, tmp_path: Path, image_folder_root: Path, own_error: float
) -> None:
    """The data settings cross as the data module's typed arguments: the file's data folder is read
    (nothing downloaded or cached into it, whatever the file says), one given here replaces it."""
    theirs = tmp_path / "their_data"
    shutil.copytree(image_folder_root / "train", theirs / "train")
    shutil.copytree(image_folder_root / "test", theirs / "test")
    data = {"dataset": "cifar10", "root": str(theirs), "download": True, "cache": True, "val_size": 50}
    path = crafted(trained, tmp_path / "crafted.ckpt", ("datamodule_hyper_parameters", data))
    before = files_of(theirs)
    results = evaluated(path)
    assert files_of(theirs) == before and 0 <= results["test_err"] <= 100  # no cifar10-uint8.pt written there
    mine = tmp_path / "my_data"
    shutil.copytree(theirs, mine)
    evaluated(path, f"data.root={mine}")
    assert (mine / "cifar10-uint8.pt").is_file()  # the command's own folder caches as training does


def test_data_settings_must_fit_the_data_modules_signature(trained: Path, tmp_path: Path) -> None:
    path = crafted(trained, tmp_path / "crafted.ckpt", ("datamodule_hyper_parameters.val_size", "50"))
    with pytest.raises(CheckpointError, match=r"data setting val_size='50' is not of the type int"):
        evaluated(path)


def test_a_users_network_is_evaluated_once_they_allow_it(
    trained: Path, tmp_path: Path, my_lab: Path, own_error: float
) -> None:
    theirs = with_my_network(trained, tmp_path / "theirs.ckpt")
    with pytest.raises(UntrustedConfig, match=r"holds the network 'lab_nets\.wide'"):
        evaluated(theirs)
    # By the command's option (here a module prefix), and by the environment variable (the network).
    assert evaluated(theirs, "trusted_targets=[lab_nets]")["test_err"] == own_error
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENVIRONMENT_VARIABLE, MY_NET)
        assert evaluated(theirs)["test_err"] == own_error


def test_the_command_allows_a_network_named_on_its_command_line(trained: Path, tmp_path: Path, my_lab: Path) -> None:
    theirs = with_my_network(trained, tmp_path / "theirs.ckpt")
    command = [sys.executable, "-m", "resnet_cifar.evaluate", f"ckpt_path={theirs}", "trusted_targets=[lab_nets]"]
    completed = assert_ok(run_command(command, tmp_path / "cwd", PYTHONPATH=str(my_lab)))
    assert "test error" in completed.stdout and theirs.with_suffix(".eval.json").is_file()


def test_the_refusal_is_one_error_line_and_exit_status_2(trained: Path, tmp_path: Path) -> None:
    folder = victims(tmp_path / "victims")
    path = crafted(trained, tmp_path / "crafted.ckpt", ("hyper_parameters.net", payload("creates", folder)))
    before = files_of(folder)
    completed = run_cli("evaluate", f"ckpt_path={path}", cwd=tmp_path / "cwd")
    assert completed.returncode == 2 and "Traceback" not in completed.output, describe(completed)
    (error,) = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: checkpoint {path} holds the network 'builtins.open', which is not one of")
    assert "trusted_targets=[builtins.open]" in error and f"{ENVIRONMENT_VARIABLE}=builtins.open" in error
    assert files_of(folder) == before
