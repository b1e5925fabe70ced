"""Where a search's study lives, and what the search writes when it ends.

The study is the search's memory: every trial's parameters, state, validation curve and result.
By default it is the SQLite file ``optuna.db`` in the sweep folder; ``hydra.sweeper.storage`` names
another database (``postgresql://host/db``: one server that every node of a cluster reaches). The
sweeper and every trial's job open the same URL.

What the storage holds is data that anyone with access to the database may have written: the
results report only the trials whose parameters fit this command's search space, rebuilt from it
(:func:`resnet_cifar.search.space.params_in_space`), and the best trial among them.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from resnet_cifar.errors import ConfigError
from resnet_cifar.files import atomic_write
from resnet_cifar.search.space import OutsideSpace, SearchSpace, params_in_space, shown

log = logging.getLogger(__name__)
DEFAULT_STUDY_FILE = "optuna.db"
RESULTS_FILE = "optimization_results.yaml"
# SQLite makes a writer wait this long for another's lock (jobs of a parallel search report at
# the same time) before it fails; Python's default is 5 s.
SQLITE_LOCK_TIMEOUT_S = 120
# Study attributes that record what the search was, for its resumption and for the dashboard.
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


def open_study(
    storage: Any, name: str, direction: str, sampler_config: DictConfig, metric: str, space: SearchSpace
) -> Any:
    """Study ``name`` in ``storage``, created or continued, for a search that ``direction``s
    ``metric`` over ``space``, its objective named after ``metric`` (optuna-dashboard shows the
    name). Its sampler is seeded after the trials it has, so that a continued search does not
    draw its first trials' values again."""
    import optuna
    from hydra.utils import instantiate

    try:
        existing = len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    except KeyError:
        existing = 0
    sampler_settings = {}
    if sampler_config.get("seed") is not None:
        sampler_settings["seed"] = int(sampler_config.seed) + existing
    sampler = instantiate(sampler_config, **sampler_settings)
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=sampler, direction=direction, load_if_exists=True
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {name} in this storage was made to {study.direction.name.lower()}, not to "
            f"{direction}: choose another hydra.sweeper.study_name or hydra.sweep.dir"
        )
    stored_metric = study.user_attrs.get(METRIC_ATTR, metric)
    if existing and stored_metric != metric:
        raise ConfigError(
            f"study {name} optimises {shown(stored_metric)}, not optimized_metric={metric}: "
            "continue it with the same metric, or start another (hydra.sweeper.study_name or hydra.sweep.dir)"
        )
    stored_fixed = study.user_attrs.get(FIXED_ATTR, space.fixed)
    if existing and stored_fixed != space.fixed:
        log.warning(
            "continuing study %s with other settings than its trials so far had: %s (before: %s)",
            name,
            " ".join(space.fixed),
            shown(stored_fixed, limit=2000),
        )
    study.set_user_attr(METRIC_ATTR, metric)
    study.set_user_attr(FIXED_ATTR, space.fixed)
    with warnings.catch_warnings():  # naming the objective is experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])
    return study


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of ``study_name``."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def trials_in_space(study: Any, space: SearchSpace) -> tuple[list[tuple[Any, dict[str, Any]]], dict[int, str]]:
    """The study's trials whose parameters fit ``space``, each with its parameters rebuilt from
    it; and the other trials' numbers, each with why it does not fit."""
    fitting, outside = [], {}
    for trial in study.get_trials(deepcopy=False):
        try:
            fitting.append((trial, params_in_space(space, trial.params, complete=False)))
        except OutsideSpace as why:
            outside[trial.number] = str(why)
    return fitting, outside


def summary(study: Any, space: SearchSpace, optimized_metric: str) -> dict[str, Any]:
    """The search's results: the best trial (by the metric the trials returned) and every trial
    with its state, value, parameters and run directory; only trials that fit ``space``."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    trials = trials_in_space(study, space)[0]
    complete = [
        (trial, params)
        for trial, params in trials
        if trial.state == TrialState.COMPLETE and isinstance(trial.value, float) and math.isfinite(trial.value)
    ]
    result: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "direction": study.direction.name.lower(),
        "optimized_metric": optimized_metric,
    }
    if complete:
        pick = max if study.direction == StudyDirection.MAXIMIZE else min
        best, params = pick(complete, key=lambda pair: pair[0].value)
        result |= {"best_trial": best.number, "best_params": dict(params), "best_value": best.value}
    else:
        result |= {"best_trial": None, "best_params": None, "best_value": None}
    counts: dict[str, int] = {}
    for trial, _ in trials:
        counts[state_name(trial.state)] = counts.get(state_name(trial.state), 0) + 1
    result["n_trials"] = counts
    result["trials"] = [describe_trial(trial, params) for trial, params in trials]
    return result


def state_name(state: Any) -> str:
    """complete, pruned, failed, running or waiting."""
    return {"FAIL": "failed"}.get(state.name, state.name.lower())


def describe_trial(trial: Any, params: dict[str, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {
        "number": trial.number,
        "state": state_name(trial.state),
        "value": trial.value,
        "params": params,
    }
    if trial.intermediate_values:
        last_step = max(trial.intermediate_values)
        described["last_step"] = last_step
        described["last_reported"] = trial.intermediate_values[last_step]
    if isinstance(trial.user_attrs.get(RUN_DIR_ATTR), str):
        described["run_dir"] = trial.user_attrs[RUN_DIR_ATTR]
    return described


def write_results(study: Any, space: SearchSpace, optimized_metric: str, sweep_dir: str | Path) -> Path:
    """``optimization_results.yaml`` in ``sweep_dir``: :func:`summary` of ``study``."""
    path = Path(sweep_dir) / RESULTS_FILE
    with atomic_write(path) as temporary:
        temporary.write_text(yaml.safe_dump(summary(study, space, optimized_metric), sort_keys=False))
    return path
