"""The search's trials as jobs of the SLURM and Ray clusters (scripts/slurm_cluster.sh,
scripts/ray_cluster.sh; markers `slurm` and `ray`): two at once, each reporting its validation
curve to the one SQLite study from the cluster's worker, read back with Optuna's API."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from commands import TESTS, assert_ok, run_command
from run_outputs import read_json
from tiny_runs import TINY_SYNTHETIC_RUN

TRIAL = (
    *TINY_SYNTHETIC_RUN,
    "trainer.max_steps=6",
    "trainer.val_check_interval=2",
    "~callbacks.input_preview",
    "~callbacks.progress_bar",
)


def search_two_at_once(sweep_dir: Path, *launcher: str) -> None:
    command = [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        "-m",
        "hparams_search=lr_wd",
        *TRIAL,
        *launcher,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    assert_ok(run_command(command, sweep_dir.parent, timeout=600))
    trials = optuna.load_study(study_name="lr_wd", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    for trial in trials:
        assert sorted(trial.intermediate_values) == [2, 4, 6]  # written by the job on the cluster
        assert trial.value == pytest.approx(read_json(Path(trial.user_attrs["run_dir"]) / "metrics.json")["val_err"])


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_jobs_are_trials_of_one_sqlite_study(slurm_cluster: None, tmp_path: Path) -> None:
    search_two_at_once(
        tmp_path / "sweep", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.poll_s=1"
    )


@pytest.mark.slow
@pytest.mark.ray
def test_ray_tasks_are_trials_of_one_sqlite_study(ray_cluster: str, tmp_path: Path) -> None:
    search_two_at_once(
        tmp_path / "sweep",
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={ray_cluster}",
        "hydra.launcher.ray.remote.num_cpus=1",
        "hydra.launcher.poll_s=0.5",
        # Ray's workers get the cluster's environment, not the command's: the tests' folder too.
        f"+hydra.launcher.ray.init.runtime_env.env_vars.PYTHONPATH='{TESTS}'",
    )
