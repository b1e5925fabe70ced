"""The search beside hydra-optuna-sweeper, in the same environment as lightning-hydra-template's
users have it (installed without its dependencies, which would downgrade Optuna; here into a
folder first on the commands' PYTHONPATH): the project's search runs, without Hydra's warnings,
and the other Hydra apps keep that plugin's own hydra/sweeper=optuna."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from commands import assert_ok, describe, run_command
from launch.test_hydra_plugins import USERS_APP
from search.searches import load_study, results, search_command, trial_dirs

STOCK_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


@pytest.fixture(scope="module")
def stock_sweeper(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder holding hydra-optuna-sweeper, for the commands' PYTHONPATH."""
    target = tmp_path_factory.mktemp("hydra_optuna_sweeper")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target]
    installed = run_command([*pip, "hydra-optuna-sweeper"], target, timeout=300)
    if installed.returncode != 0:  # pip reaches no package index that has it
        pytest.skip(f"`pip install hydra-optuna-sweeper` failed: {installed.output.strip().splitlines()[-1:]}")
    assert (target / "hydra_plugins" / "hydra_optuna_sweeper" / "config.py").is_file()
    return str(target)


def test_the_search_runs_beside_hydra_optuna_sweeper(stock_sweeper: str, tmp_path: Path) -> None:
    info = [sys.executable, "-m", "resnet_cifar.train", "--info", "plugins"]
    plugins = assert_ok(run_command(info, tmp_path, PYTHONPATH=stock_sweeper))
    assert "hydra_plugins.hydra_optuna_sweeper.config" in plugins.stdout  # Hydra's scan imported it

    sweep_dir = tmp_path / "sweep"
    command = search_command(sweep_dir, "hydra.sweeper.n_trials=2", "hydra/sweeper/optuna_sampler=random")
    completed = assert_ok(run_command(command, tmp_path, PYTHONPATH=stock_sweeper))
    # Hydra's deprecated matching of a config with the other plugin's schema of the same name.
    assert "validated against ConfigStore schema" not in completed.output, describe(completed)
    assert [trial.state for trial in load_study(sweep_dir).trials] == [TrialState.COMPLETE] * 2
    assert len(trial_dirs(sweep_dir)) == 2 and results(sweep_dir)["n_trials"] == {"complete": 2}


def test_another_apps_optuna_sweeper_is_hydra_optuna_sweepers(stock_sweeper: str, tmp_path: Path) -> None:
    app = tmp_path / "my_app.py"
    app.write_text(USERS_APP)
    command = [sys.executable, app, "hydra/sweeper=optuna", "--cfg", "hydra", "--package", "hydra.sweeper"]
    completed = assert_ok(run_command(command, tmp_path, PYTHONPATH=stock_sweeper))
    assert f"_target_: {STOCK_SWEEPER}" in completed.stdout and completed.stderr == "", describe(completed)
