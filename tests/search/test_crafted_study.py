"""A study's storage is data, which anyone with access to the database may have written. Tested as
an attacker would: a real search's database is given trials whose parameters carry overrides of
their own (names that are not the search's, one that holds a whole command line), values outside
the search's ranges, and a pruner config naming code to run; the search continued on it runs
only this command's space and pruner. Nothing outside the sweep folder is created, changed or
deleted, and each crafted trial is skipped with a warning."""

from __future__ import annotations

import hashlib
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from commands import assert_ok, run_command
from search.searches import LR_WD, load_study, results, search_command, trial_dirs


def snapshot(root: Path, leave_out: Path) -> dict[str, str]:
    """Every file and folder below ``root`` but ``leave_out``: a file by the digest of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        for path in sorted(root.rglob("*"))
        if path != leave_out and leave_out not in path.parents
    }


def add_trial(study: optuna.Study, state: TrialState, params: dict, value: float | None = None) -> int:
    """A trial as a crafted database holds it: its own distributions, wide enough for its values."""
    distributions = {
        name: CategoricalDistribution([param]) if isinstance(param, str) else FloatDistribution(1e-6, 1e4, log=True)
        for name, param in params.items()
    }
    study.add_trial(optuna.trial.create_trial(state=state, params=params, distributions=distributions, value=value))
    return study.trials[-1].number


def test_a_crafted_study_runs_only_this_commands_space_and_pruner(tmp_path: Path) -> None:
    sweep_dir, victim = tmp_path / "sweep", tmp_path / "victim"
    assert_ok(run_command(search_command(sweep_dir, "hydra.sweeper.n_trials=1"), tmp_path / "cwd"))
    (victim / "inner").mkdir(parents=True)
    (victim / "notes.txt").write_text("a user's file\n")
    (victim / "inner" / "data.bin").write_bytes(bytes(range(256)))

    study = load_study(sweep_dir)
    lr_wd = {"optimizer.lr": 0.1, "optimizer.weight_decay": 1e-4}
    # Trials cut short (running), which the search would run again with their parameters.
    deleter = add_trial(
        study,
        TrialState.RUNNING,
        {**lr_wd, "+callbacks.evil._target_": "shutil.rmtree", "+callbacks.evil.path": str(victim)},
    )
    command_line = add_trial(
        study,
        TrialState.RUNNING,
        {
            f"optimizer.lr=0.1 +callbacks.x._target_=builtins.open +callbacks.x.file={victim}/new.txt": 0.1,
            "optimizer.weight_decay": 1e-4,
        },
    )
    too_large = add_trial(study, TrialState.RUNNING, {**lr_wd, "optimizer.lr": 50.0})
    # A trial enqueued with a value outside the range: Optuna's ask hands it out as it is.
    study.enqueue_trial({**lr_wd, "optimizer.lr": 7.0}, skip_if_exists=False)
    enqueued = study.trials[-1].number
    # A finished trial better than any, under a name that is not the search's: not the best.
    best_by_far = add_trial(study, TrialState.COMPLETE, {**lr_wd, "model.depth": 1202.0}, value=0.0)
    # A pruner config in the study, as earlier versions kept it there: it names code to run.
    study.set_user_attr("pruner", {"_target_": "shutil.rmtree", "path": str(victim)})
    before = snapshot(tmp_path, leave_out=sweep_dir)

    # One trial more than the study has: the crafted ones, skipped, count as failed.
    completed = assert_ok(run_command(search_command(sweep_dir, "hydra.sweeper.n_trials=7"), tmp_path / "cwd"))

    assert snapshot(tmp_path, leave_out=sweep_dir) == before
    trials = load_study(sweep_dir).trials
    for number in (deleter, command_line, too_large, enqueued):
        assert f"trial {number} of study lr_wd is skipped, not run: its " in completed.output, completed.output[-4000:]
        assert trials[number].state == TrialState.FAIL
        assert trials[number].user_attrs["error"].startswith("skipped, not run: its ")
    assert "its parameter '+callbacks.evil._target_' is not one of this search's" in trials[deleter].user_attrs["error"]
    assert f"trial {best_by_far} of study lr_wd is left out of the results: its parameter 'model.depth'" in (
        completed.output
    )
    new = trials[-1]
    assert (new.number, new.state) == (6, TrialState.COMPLETE) and set(new.params) == set(LR_WD)
    assert [int(path.name.split("_")[0]) for path in trial_dirs(sweep_dir)] == [0, 6]  # no crafted trial ran
    found = results(sweep_dir)
    assert [trial["number"] for trial in found["trials"]] == [0, 6]
    assert found["best_trial"] in (0, 6) and set(found["best_params"]) == set(LR_WD)
    for run_dir in trial_dirs(sweep_dir):
        assert str(victim) not in (run_dir / ".hydra" / "overrides.yaml").read_text()
