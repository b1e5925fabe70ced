"""evaluate with checkpoints from strangers: what their configs name is built only where allowed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from commands import assert_ok, describe, run_cli, run_command
from crafted_checkpoints import KEYS, PAYLOADS, files_of, payload, plant, users_network_module, victims, write_crafted
from resnet_cifar.errors import UntrustedConfig
from resnet_cifar.evaluate import evaluate
from resnet_cifar.trusted_targets import ENVIRONMENT_VARIABLE, TrustedTargets

pytestmark = pytest.mark.usefixtures("no_trusted_targets_from_outside")


MY_NET = "lab_nets.wide"


@pytest.fixture
def my_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder of a user's own network, ``lab_nets.wide`` (the paper's, built by their code),
    importable here."""
    return users_network_module(tmp_path / "my_lab", "lab_nets", monkeypatch)


def with_my_network(trained: Path, destination: Path) -> Path:
    """``trained``'s checkpoint as if its network had been lab_nets.wide."""
    checkpoint = torch.load(trained, weights_only=True)
    for key in ("model", "module.net", "hyper_parameters.net"):
        checkpoint = plant(
            checkpoint, key, {**checkpoint["hyper_parameters"]["run_config"]["model"], "_target_": MY_NET}
        )
    torch.save(checkpoint, destination)
    return destination


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("key", KEYS)
def test_code_planted_at_any_key_is_refused_and_touches_nothing(
    trained: Path, tmp_path: Path, key: str, kind: str
) -> None:
    folder = victims(tmp_path)
    crafted = write_crafted(trained, folder / "crafted.ckpt", key, payload(kind, folder))
    before = files_of(folder)
    with pytest.raises(UntrustedConfig) as refused:
        evaluate(str(crafted), [])
    target = payload(kind, folder)["_target_"]
    assert f"names {key}._target_='{target}'" in str(refused.value)
    assert f"trusted_targets=[{target}]" in str(refused.value)
    assert files_of(folder) == before  # nothing created, truncated, overwritten or unpickled; no results


def test_the_refusal_is_one_error_line_and_exit_status_2(trained: Path, tmp_path: Path) -> None:
    folder = victims(tmp_path)
    crafted = write_crafted(trained, folder / "crafted.ckpt", "trainer.plugins[0]", payload("creates", folder))
    before = files_of(folder)
    completed = run_cli("evaluate", f"ckpt_path={crafted}", cwd=tmp_path / "cwd")
    assert completed.returncode == 2 and "Traceback" not in completed.output, describe(completed)
    (error,) = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert f"error: checkpoint {crafted} names trainer.plugins[0]._target_='builtins.open'" in error
    assert "trusted_targets=[builtins.open]" in error and f"{ENVIRONMENT_VARIABLE}=builtins.open" in error
    assert files_of(folder) == before


def test_the_checkpoints_own_trusted_targets_count_for_nothing(trained: Path, tmp_path: Path) -> None:
    folder = victims(tmp_path)
    checkpoint = plant(torch.load(trained, weights_only=True), "data", payload("creates", folder))
    checkpoint["hyper_parameters"]["run_config"]["trusted_targets"] = ["builtins"]
    torch.save(checkpoint, folder / "crafted.ckpt")
    with pytest.raises(UntrustedConfig, match=r"names data\._target_='builtins\.open'"):
        evaluate(str(folder / "crafted.ckpt"), [])
    assert not (folder / "created.txt").exists()


def test_an_interpolation_in_a_checkpoint_is_refused_unresolved(trained: Path, tmp_path: Path) -> None:
    calls = []
    OmegaConf.register_new_resolver("recorded", lambda value: calls.append(value) or value, replace=True)
    for value in ("${oc.env:HOME}", "${recorded:x}"):
        crafted = write_crafted(trained, tmp_path / "crafted.ckpt", "data.root", value)
        with pytest.raises(UntrustedConfig, match=r"interpolation at data\.root"):
            evaluate(str(crafted), [])
    assert not calls and not list(tmp_path.glob("*.eval.json"))


def test_the_projects_own_checkpoint_is_evaluated(trained: Path) -> None:
    results = evaluate(str(trained), [])
    assert results["step"] == 2 and 0 <= results["test_err"] <= 100
    assert json.loads(trained.with_suffix(".eval.json").read_text()) == results
    assert results["environment"]["device_type"] == "cpu" and results["environment"]["torch"] == torch.__version__


def test_a_users_network_is_evaluated_once_they_allow_it(trained: Path, tmp_path: Path, my_lab: Path) -> None:
    theirs = str(with_my_network(trained, tmp_path / "theirs.ckpt"))
    with pytest.raises(UntrustedConfig, match=r"names model\._target_='lab_nets\.wide'"):
        evaluate(theirs, [])
    own = evaluate(str(trained), [])["test_err"]
    # By the command's option (here a module prefix), and by the environment variable (the target).
    assert evaluate(theirs, [], trusted=TrustedTargets.default(["lab_nets"]))["test_err"] == own
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENVIRONMENT_VARIABLE, MY_NET)
        assert evaluate(theirs, [])["test_err"] == own


def test_the_command_allows_a_network_named_on_its_command_line(trained: Path, tmp_path: Path, my_lab: Path) -> None:
    theirs = with_my_network(trained, tmp_path / "theirs.ckpt")
    command = [sys.executable, "-m", "resnet_cifar.evaluate", f"ckpt_path={theirs}", "trusted_targets=[lab_nets]"]
    completed = assert_ok(run_command(command, tmp_path / "cwd", PYTHONPATH=str(my_lab)))
    assert "test error" in completed.stdout and theirs.with_suffix(".eval.json").is_file()
