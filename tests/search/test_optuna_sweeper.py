"""``-m hparams_search=lr_wd``: the search as a user runs it (a fresh process), its study read back
with Optuna's own API. Interrupted and continued, trials at once through the parallel launcher,
a pruned trial, a failed trial, never choosing on the test set, and Optuna missing.

The sweeper is src/resnet_cifar/search/sweeper.py (its Hydra plugin
src/hydra_plugins/resnet_cifar/optuna_study_sweeper.py); its tests are not in a
tests/hydra_plugins folder, which every command under test would import (the tests' folder is on
their PYTHONPATH, and Hydra imports every module of that namespace looking for plugins)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from commands import assert_ok, command_environment, describe, run_command
from run_outputs import read_json
from search.searches import LR_WD, TRIAL, load_study, results, search_command, trial_dirs


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("search") / "sweep"
    assert_ok(run_command(search_command(sweep_dir, "hydra.sweeper.n_trials=2"), sweep_dir.parent / "cwd"))
    return sweep_dir


def test_the_study_is_in_sqlite_in_the_sweep_folder(search: Path) -> None:
    study = load_study(search)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.metric_names == ["val_err"]  # optuna-dashboard's name of the objective
    for trial, run_dir in zip(study.trials, trial_dirs(search)):
        assert trial.user_attrs["run_dir"] == str(run_dir)
        metrics = read_json(run_dir / "metrics.json")
        assert trial.value == pytest.approx(metrics["val_err"])
        assert sorted(trial.intermediate_values) == [2, 4, 6]  # the validation curve, reported by the job
        assert trial.intermediate_values[6] == pytest.approx(metrics["val_err"])
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        assert config["optimizer"]["lr"] == trial.params["optimizer.lr"]


def test_trial_folders_are_named_by_number_and_rounded_values(search: Path) -> None:
    # e.g. 0_optimizer.lr=0.0856,optimizer.weight_decay=0.000269
    for trial, run_dir in zip(load_study(search).trials, trial_dirs(search)):
        number, values = run_dir.name.split("_", 1)
        named = dict(part.split("=") for part in values.split(","))
        assert int(number) == trial.number and list(named) == ["optimizer.lr", "optimizer.weight_decay"]
        for key, text in named.items():
            assert float(text) == pytest.approx(trial.params[key], rel=5e-3), run_dir.name  # rounded ...
            assert len(text.split("e")[0].replace(".", "").lstrip("0")) <= 3, run_dir.name  # ... to 3 digits


def test_best_params_are_those_of_the_lowest_validation_error(search: Path) -> None:
    found = results(search)
    val_errs = {int(d.name.split("_")[0]): read_json(d / "metrics.json")["val_err"] for d in trial_dirs(search)}
    best = min(val_errs, key=val_errs.get)
    assert (found["best_value"], found["optimized_metric"]) == (pytest.approx(val_errs[best]), "val_err")
    assert found["best_params"] == load_study(search).trials[best].params
    assert [trial["state"] for trial in found["trials"]] == ["complete", "complete"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("optimized_metric=test_err",),
            "error: optimized_metric=test_err would choose the hyper-parameters on the test set",
        ),
        (
            ("optimized_metric=accuracy",),
            "error: optimized_metric=accuracy is not a number in metrics.json; a search may optimise one of val_err, "
            "val_loss, train_err, train_loss, steps, wall_s, images_per_s",
        ),
        (("data.val_size=0",), "error: optimized_metric=val_err needs a validation split, and data.val_size=0"),
    ],
)
def test_a_metric_a_search_must_not_use_is_refused(tmp_path: Path, overrides: tuple[str, ...], message: str) -> None:
    completed = run_command(search_command(tmp_path / "sweep", *overrides), tmp_path)
    assert completed.returncode == 2, describe(completed)
    errors = [line for line in completed.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), describe(completed)
    assert "Traceback" not in completed.output
    assert not (tmp_path / "sweep").exists()  # refused before the study or any trial


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the search ended before {what}: {process.communicate()[0][-4000:]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)


def reported(sweep_dir: Path, number: int) -> bool:
    # Written after the first round: by then the sweeper has made the database's tables (were
    # they made here at the same time, one of the two would fail).
    if not (sweep_dir / "optimization_results.yaml").exists():
        return False
    try:
        trials = load_study(sweep_dir).trials
    except KeyError:  # the sweeper has not made the study yet
        return False
    except sqlalchemy.exc.OperationalError:  # the sweeper holds the database's lock: look again
        return False
    return len(trials) > number and bool(trials[number].intermediate_values)


@pytest.mark.slow
def test_sigterm_then_rerun_finishes_the_study_keeping_trials(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    # Long enough trials (40 steps) that trial 1 is still training when the signal comes.
    command = search_command(
        sweep_dir, "hydra.sweeper.n_trials=3", "trainer.max_steps=40", "trainer.val_check_interval=4"
    )
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=command_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: reported(sweep_dir, 1), 240, "validation of trial 1", process)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output[-4000:]
    before = load_study(sweep_dir).trials
    assert [trial.state for trial in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    cut_short = trial_dirs(sweep_dir)[1]
    assert (cut_short / "checkpoints" / "last.ckpt").is_file() and not (cut_short / "metrics.json").exists()

    assert_ok(run_command(command, tmp_path))
    after = load_study(sweep_dir).trials
    assert [trial.state for trial in after] == [TrialState.COMPLETE] * 3  # n_trials counts the whole study
    assert (after[0].value, after[0].datetime_complete) == (before[0].value, before[0].datetime_complete)
    assert after[1].params == before[1].params
    assert trial_dirs(sweep_dir)[1] == cut_short  # trial 1 ran again in its folder ...
    metrics = read_json(cut_short / "metrics.json")
    assert metrics["resumed_from"] > 0 and metrics["steps"] == 40  # ... from its checkpoint
    assert after[1].value == pytest.approx(metrics["val_err"])
    assert [trial["state"] for trial in results(sweep_dir)["trials"]] == ["complete"] * 3


@pytest.mark.slow
def test_parallel_launcher_runs_two_trials_at_once(tmp_path: Path) -> None:
    sweep_dir, met = tmp_path / "sweep", tmp_path / "met"
    completed = run_command(
        search_command(
            sweep_dir,
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=2",
            # Each trial waits at the start of training until the other has started: a trial
            # finishes only if the two ran at once (one after the other, the first would fail).
            "+callbacks.wait_for_each_other._target_=probes.WaitForEachOther",
            f"+callbacks.wait_for_each_other.folder={met}",
        ),
        tmp_path,
    )
    assert_ok(completed)
    trials = load_study(sweep_dir).trials
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.COMPLETE], completed.output[-4000:]
    assert all(sorted(trial.intermediate_values) == [2, 4, 6] for trial in trials)
    assert len(list(met.iterdir())) == 2  # in two worker processes, which met
    pids = [{p.name.split(".")[-2] for p in run_dir.glob("events.out.tfevents.*")} for run_dir in trial_dirs(sweep_dir)]
    assert pids[0] != pids[1] and pids[0] | pids[1] == {p.name for p in met.iterdir()}


def test_a_trial_worse_than_the_median_is_pruned(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    # A finished trial 0 whose validation error (1 %) no tiny run reaches: trial 1 is pruned at once.
    study = optuna.create_study(storage=f"sqlite:///{sweep_dir / 'optuna.db'}", study_name="lr_wd")
    params = {"optimizer.lr": 0.1, "optimizer.weight_decay": 1e-4}
    study.add_trial(
        optuna.trial.create_trial(params=params, distributions=LR_WD, value=1.0, intermediate_values={2: 1.0})
    )
    completed = run_command(
        search_command(
            sweep_dir,
            "hydra.sweeper.n_trials=2",
            "hydra/sweeper/optuna_pruner=median",
            "hydra.sweeper.pruner.n_startup_trials=1",
        ),
        tmp_path,
    )
    assert_ok(completed)
    assert "trial 1 pruned at step 2" in completed.output
    trial = load_study(sweep_dir).trials[1]
    assert (trial.state, list(trial.intermediate_values)) == (TrialState.PRUNED, [2])
    (run_dir,) = trial_dirs(sweep_dir)
    assert read_json(run_dir / "pruned.json")["step"] == 2 and not (run_dir / "metrics.json").exists()
    found = results(sweep_dir)
    assert found["n_trials"] == {"complete": 1, "pruned": 1}
    assert found["trials"][1] | {"params": None} == {
        "number": 1,
        "state": "pruned",
        "value": trial.value,
        "params": None,
        "last_step": 2,
        "last_reported": trial.value,
        "run_dir": str(run_dir),
    }
    assert found["best_trial"] == 0


def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    study = optuna.create_study(storage=f"sqlite:///{sweep_dir / 'optuna.db'}", study_name="lr_wd")
    study.enqueue_trial({"model.depth": 9})  # not 6n+2: its run refuses it with an error: line
    study.enqueue_trial({"model.depth": 8})
    completed = run_command(search_command(sweep_dir, "hydra.sweeper.n_trials=2", "model.depth=choice(8,9)"), tmp_path)
    assert_ok(completed)
    assert "error: depth=9 is not of the form 6n+2" in completed.output
    failed, complete = load_study(sweep_dir).trials
    assert (failed.state, complete.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert failed.user_attrs["error"].startswith("TrialFailed: the run ended with an error: line")
    assert results(sweep_dir)["n_trials"] == {"failed": 1, "complete": 1}


def optuna_stand_in(tmp_path: Path, body: str) -> str:
    """A folder to put first on PYTHONPATH, whose ``optuna`` package runs ``body`` when imported."""
    package = tmp_path / "stand_in" / "optuna"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body + "\n")
    return str(package.parent)


def test_without_optuna_a_search_says_how_to_install_it(tmp_path: Path) -> None:
    missing = optuna_stand_in(tmp_path, "raise ImportError('No module named optuna')")
    completed = run_command(search_command(tmp_path / "sweep"), tmp_path, PYTHONPATH=missing)
    assert completed.returncode == 2, describe(completed)
    assert completed.output.strip().splitlines() == [
        "error: the hyper-parameter search (hparams_search=...) needs Optuna, which is not installed "
        "(No module named optuna): pip install -e '.[search]'"
    ], describe(completed)


def test_a_run_that_does_not_search_never_imports_optuna(tmp_path: Path) -> None:
    trap = optuna_stand_in(tmp_path, "raise RuntimeError('a run that does not search imported optuna')")
    completed = run_command(
        [sys.executable, "-m", "resnet_cifar.train", *TRIAL, f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        PYTHONPATH=trap,
    )
    assert_ok(completed)
    assert read_json(tmp_path / "run" / "metrics.json")["steps"] == 6
    assert os.environ.get("PYTHONPATH", "") != trap
