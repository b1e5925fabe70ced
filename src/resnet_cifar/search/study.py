"""Where a search's study lives, and what the search writes when it ends.

The study is the search's memory: every trial's parameters, state, validation curve and result.
By default it is the SQLite file ``optuna.db`` in the sweep folder; ``hydra.sweeper.storage`` names
another database (``postgresql://host/db``: one server that every node of a cluster reaches). The
sweeper and every trial's job open the same URL.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from resnet_cifar.files import atomic_write

log = logging.getLogger(__name__)
DEFAULT_STUDY_FILE = "optuna.db"
RESULTS_FILE = "optimization_results.yaml"
# SQLite makes a writer wait this long for another's lock (jobs of a parallel search report at
# the same time) before it fails; Python's default is 5 s.
SQLITE_LOCK_TIMEOUT_S = 120
# Study attributes that record what the search was, for its resumption and for the dashboard.
PRUNER_ATTR = "pruner"
FIXED_ATTR = "fixed_overrides"
METRIC_ATTR = "optimized_metric"
# A trial's attribute: its run directory.
RUN_DIR_ATTR = "run_dir"


def route_optuna_logging() -> None:
    """Optuna's messages through the logging that Hydra set up (its format, its log files)."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """``storage``, or the SQLite file in ``sweep_dir`` when it is None; a SQLite path made
    absolute, so that jobs started elsewhere (another working directory, a cluster node) find it."""
    if not storage:
        return f"sqlite:///{Path(sweep_dir).absolute() / DEFAULT_STUDY_FILE}"
    storage = str(storage)
    prefix = "sqlite:///"
    if storage.startswith(prefix) and storage[len(prefix) :] not in ("", ":memory:"):
        return f"{prefix}{Path(storage[len(prefix) :]).absolute()}"
    return storage


def open_storage(url: str) -> Any:
    """Optuna's storage at ``url`` (created if it is a new SQLite file)."""
    import optuna

    engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}} if url.startswith("sqlite:") else None
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of ``study_name``."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def summary(study: Any) -> dict[str, Any]:
    """The search's results: the best trial (by the validation metric the trials returned) and
    every trial with its state, value, parameters and run directory."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    result: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "direction": study.direction.name.lower(),
        "optimized_metric": study.user_attrs.get(METRIC_ATTR),
    }
    if complete:
        best = study.best_trial
        result |= {"best_trial": best.number, "best_params": dict(best.params), "best_value": best.value}
    else:
        result |= {"best_trial": None, "best_params": None, "best_value": None}
    counts: dict[str, int] = {}
    for trial in trials:
        counts[state_name(trial.state)] = counts.get(state_name(trial.state), 0) + 1
    result["n_trials"] = counts
    result["trials"] = [describe_trial(trial) for trial in trials]
    return result


def state_name(state: Any) -> str:
    """complete, pruned, failed, running or waiting."""
    return {"FAIL": "failed"}.get(state.name, state.name.lower())


def describe_trial(trial: Any) -> dict[str, Any]:
    described: dict[str, Any] = {
        "number": trial.number,
        "state": state_name(trial.state),
        "value": trial.value,
        "params": dict(trial.params),
    }
    if trial.intermediate_values:
        last_step = max(trial.intermediate_values)
        described["last_step"] = last_step
        described["last_reported"] = trial.intermediate_values[last_step]
    if RUN_DIR_ATTR in trial.user_attrs:
        described["run_dir"] = trial.user_attrs[RUN_DIR_ATTR]
    return described


def write_results(study: Any, sweep_dir: str | Path) -> Path:
    """``optimization_results.yaml`` in ``sweep_dir``: :func:`summary` of ``study``."""
    path = Path(sweep_dir) / RESULTS_FILE
    with atomic_write(path) as temporary:
        temporary.write_text(OmegaConf.to_yaml(OmegaConf.create(summary(study))))
    return path
