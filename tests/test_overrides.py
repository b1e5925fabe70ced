"""A config group set to null on the command line: one line naming Hydra's way to leave it out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from commands import run_command
from resnet_cifar.errors import ConfigError
from resnet_cifar.overrides import config_groups, refuse_null_groups
from resnet_cifar.train import compose_config


def test_groups_are_the_folders_of_conf() -> None:
    groups = config_groups()
    assert {"logger", "model", "trainer", "hydra/launcher"} <= groups
    assert "seed" not in groups and "trainer.max_steps" not in groups


@pytest.mark.parametrize("argument", ["logger=null", "+logger=null", "callbacks=null", "hydra/launcher=null"])
def test_a_group_set_to_null_names_the_delete_override(argument: str) -> None:
    group = argument.lstrip("+").split("=")[0]
    with pytest.raises(ConfigError, match=rf"Hydra cannot set to null; leave it out with '~{group}'"):
        refuse_null_groups([argument])


@pytest.mark.parametrize(
    "argument", ["~logger", "logger=csv", "seed=null", "trainer.profiler=null", "-m", "model.depth="]
)
def test_other_overrides_pass(argument: str) -> None:
    refuse_null_groups([argument])


def test_compose_config_raises_the_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'~logger'"):
        compose_config(["experiment=smoke", "logger=null"], output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_command_prints_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        "experiment=smoke",
        "logger=null",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    completed = run_command(command, tmp_path)
    assert completed.returncode == 2, completed.output
    assert completed.stderr.strip().splitlines() == [
        "error: logger=null: logger is a config group, which Hydra cannot set to null; "
        "leave it out with '~logger' (Hydra's delete), or choose one of conf/logger/"
    ]
    assert "Traceback" not in completed.output and not (tmp_path / "run").exists()
