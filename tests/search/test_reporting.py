"""A trial's run reports its validation curve to the study and stops when the pruner of its own
config prunes it: trained in this process as a trial of a study made here, read back with Optuna's
API."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from resnet_cifar.report import write_report
from resnet_cifar.search.pruned import PRUNED_FILE, RunPruned
from tiny_runs import TINY_SYNTHETIC_RUN, run_training

# Validation after steps 2, 4 and 6.
TRIAL_RUN = (*TINY_SYNTHETIC_RUN, "hparams_search=lr_wd", "trainer.max_steps=6", "trainer.val_check_interval=2")
MEDIAN = ("hydra/sweeper/optuna_pruner=median", "hydra.sweeper.pruner.n_startup_trials=1")
LR = {"optimizer.lr": FloatDistribution(0.01, 0.5, log=True)}


def study_with_one_trial_done(tmp_path: Path, curve_value: float) -> tuple[optuna.Study, str]:
    """A study whose trial 0 finished with ``curve_value`` at steps 2, 4 and 6, and whose trial 1
    is asked (running), as the sweeper leaves it before it launches trial 1's run."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=url, study_name="lr_wd", direction="minimize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"optimizer.lr": 0.1},
            distributions=LR,
            value=curve_value,
            intermediate_values={2: curve_value, 4: curve_value, 6: curve_value},
        )
    )
    assert study.ask(LR).number == 1
    return study, url


def train_trial_1(run_dir: Path, url: str, *overrides: str) -> dict:
    return run_training(
        run_dir,
        *TRIAL_RUN,
        "trial.number=1",
        "trial.study_name=lr_wd",
        f"trial.storage={url}",
        "optimizer.lr=0.05",
        *overrides,
    )


def test_a_trial_reports_each_validation_error_to_the_study(tmp_path):
    _, url = study_with_one_trial_done(tmp_path, curve_value=100.0)  # no error is above 100 %
    metrics = train_trial_1(tmp_path / "run", url, *MEDIAN)

    trial = optuna.load_study(study_name="lr_wd", storage=url).trials[1]
    assert sorted(trial.intermediate_values) == [2, 4, 6]
    assert trial.intermediate_values[6] == pytest.approx(metrics["val_err"])
    assert trial.user_attrs["run_dir"] == str((tmp_path / "run").absolute())
    assert trial.state == TrialState.RUNNING  # the sweeper tells the result, from the run's return value
    assert not (tmp_path / "run" / PRUNED_FILE).exists()


def test_a_trial_worse_than_the_median_is_pruned(tmp_path):
    _, url = study_with_one_trial_done(tmp_path, curve_value=1.0)
    run_dir = tmp_path / "sweep" / "1_optimizer.lr=0.05"
    message = r"^pruned by the search at step 2 \(val/err \d+\.\d\d, trial 1 of study lr_wd\)"
    with pytest.raises(RunPruned, match=message):
        train_trial_1(run_dir, url, *MEDIAN)

    trial = optuna.load_study(study_name="lr_wd", storage=url).trials[1]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [2]
    assert trial.value == trial.intermediate_values[2]
    record = json.loads((run_dir / PRUNED_FILE).read_text())
    assert record == {"trial": 1, "study_name": "lr_wd", "step": 2, "monitor": "val/err", "value": trial.value}
    assert not (run_dir / "metrics.json").exists()  # it did not finish: no test results either

    report = write_report(tmp_path / "sweep", responses=False).read_text()
    assert "| 1_optimizer.lr=0.05 | pruned by the search at step 2 (val/err" in report


def test_without_a_pruner_a_trial_only_reports(tmp_path):
    _, url = study_with_one_trial_done(tmp_path, curve_value=1.0)
    metrics = train_trial_1(tmp_path / "run", url)
    assert metrics["steps"] == 6
    assert sorted(optuna.load_study(study_name="lr_wd", storage=url).trials[1].intermediate_values) == [2, 4, 6]


@pytest.mark.parametrize("stored", ["shutil.rmtree", "optuna.pruners.MedianPruner"])
def test_a_pruner_config_stored_in_the_study_is_never_built(tmp_path, stored):
    study, url = study_with_one_trial_done(tmp_path, curve_value=1.0)  # a median pruner would prune trial 1
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("a user's file\n")
    # Where earlier versions kept the pruner: whoever can write the database could name any code.
    study.set_user_attr("pruner", {"_target_": stored, "path": str(victim), "n_startup_trials": 1})
    metrics = train_trial_1(tmp_path / "run", url)  # a command without a pruner: none, whatever the study says
    assert metrics["steps"] == 6 and (victim / "notes.txt").read_text() == "a user's file\n"


def test_a_run_that_is_not_a_trial_reports_nothing(tmp_path):
    metrics = run_training(tmp_path / "run", *TRIAL_RUN)
    assert metrics["steps"] == 6 and not (tmp_path / "run" / PRUNED_FILE).exists()
