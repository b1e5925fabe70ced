"""``hydra/sweeper=optuna`` (chosen by ``hparams_search=lr_wd``): a hyper-parameter search with Optuna.

The search runs in rounds on Optuna's ask-and-tell interface: it asks the study for up to
``n_jobs`` trials, launches them as one batch of jobs through the configured launcher (one after
another by default; at once with ``hydra/launcher=parallel``, ``slurm`` or ``ray``), and tells
the study each job's result. Every trial is an ordinary training run that returns its
``optimized_metric`` (the validation error by default), in ``<sweep dir>/<trial>_<overrides>/``.

- The study is stored in ``hydra.sweeper.storage`` (by default the SQLite file ``optuna.db`` in the
  sweep folder). Running the same command again continues it: finished trials are kept, a
  trial that was cut short (still running in the study) runs again in its own folder, where the
  run resumes from its last checkpoint, and ``n_trials`` counts every trial of the study.
- A job that fails (an exception, an ``error:`` line such as a diverged loss, a lost cluster
  job) is told to the study as failed, and the search goes on.
- Each job reports its validation curve to the study itself (conf/hparams_search/lr_wd.yaml's
  ``callbacks.report_to_study``), so the pruner (``hydra/sweeper/pruner=median``), whose
  config is stored in the study, can stop it early.
- After every round the results so far are in ``<sweep dir>/optimization_results.yaml``.

Optuna is imported only when the sweeper is built: Hydra imports this module for every command.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from resnet_cifar.cli import USAGE_ERROR_EXIT_CODE, exit_with_usage_error
from resnet_cifar.errors import ConfigError, UsageError
from resnet_cifar.search import SearchNotInstalled, require_optuna
from resnet_cifar.search.space import SearchSpace, override_value, search_space, trial_overrides
from resnet_cifar.search.study import (
    FIXED_ATTR,
    METRIC_ATTR,
    PRUNER_ATTR,
    open_storage,
    route_optuna_logging,
    storage_url,
    trial_id,
    write_results,
)

log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")
DEFAULT_STUDY_NAME = "resnet-cifar"
# A trial's attributes in the study: why it failed, and the process that launched it.
ERROR_ATTR = "error"
LAUNCHED_BY_ATTR = "launched_by"


class TrialFailed(RuntimeError):
    """A trial's run ended with an ``error:`` line (a usage error, a diverged loss)."""


class TrialTask:
    """The train command's task function as each trial's job runs it: a run that ends with an
    ``error:`` line (exit status 2) fails its trial only, instead of the whole search. Any other
    exit (a SIGTERM, whose run saved its checkpoint and exits 128 + 15) still ends the process."""

    def __init__(self, task_function: TaskFunction) -> None:
        self.task_function = task_function

    def __call__(self, cfg: DictConfig) -> Any:
        try:
            return self.task_function(cfg)
        except SystemExit as stopped:
            if stopped.code != USAGE_ERROR_EXIT_CODE:
                raise
            raise TrialFailed("the run ended with an error: line (in the job's output above)") from None


class OptunaSweeper(Sweeper):
    """Optuna's ask-and-tell loop over Hydra's launchers. The keys are those of
    conf/hydra/sweeper/optuna.yaml; ``sampler`` and ``pruner`` arrive as configs (``_target_``)
    and are built once Optuna is known to be installed."""

    def __init__(
        self,
        sampler: DictConfig,
        direction: str = "minimize",
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        params: DictConfig | None = None,
        pruner: DictConfig | None = None,
    ) -> None:
        try:
            require_optuna()
        except SearchNotInstalled as missing:
            exit_with_usage_error(missing)
        self.sampler_config = sampler
        self.direction = str(direction)
        self.storage = storage
        self.study_name = study_name or DEFAULT_STUDY_NAME
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = params
        self.pruner_config = pruner
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=TrialTask(task_function)
        )

    def sweep(self, arguments: list[str]) -> None:
        try:
            self._sweep(arguments)
        except UsageError as error:
            exit_with_usage_error(error)

    def _sweep(self, arguments: list[str]) -> None:
        assert self.config is not None
        self._check_settings()
        space = search_space(self.params, arguments)
        if not space.distributions:
            raise ConfigError("the search has no parameter to search: give hydra.sweeper.params (see lr_wd.yaml)")
        route_optuna_logging()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        url = storage_url(self.storage, sweep_dir)
        storage = open_storage(url)
        study = self._study(storage, space)
        log.info(
            "study %s in %s (see it with: optuna-dashboard %s); %s %s over %s; %d trials",
            study.study_name,
            url,
            url,
            self.direction,
            self.config.optimized_metric,
            ", ".join(space.distributions),
            self.n_trials,
        )
        try:
            self._run_trials(study, storage, space, url)
        finally:
            write_results(study, sweep_dir)
        self._conclude(study, sweep_dir)

    def _check_settings(self) -> None:
        from resnet_cifar.train import check_optimized_metric

        assert self.config is not None
        # What every trial's run would refuse (a test-set metric, a validation metric without a
        # validation split), refused once before the study is opened.
        HydraConfig.instance().set_config(self.config)  # what the check reads; each job sets its own
        check_optimized_metric(self.config)
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"hydra.sweeper.direction={self.direction}: choose minimize or maximize")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise ConfigError(
                f"hydra.sweeper.n_trials={self.n_trials} and hydra.sweeper.n_jobs={self.n_jobs} must be 1 or more"
            )
        if not isinstance(self.config.get("trial"), DictConfig):
            raise ConfigError(
                "the search config has no `trial` node, through which each run learns its trial: start from "
                "conf/hparams_search/lr_wd.yaml (trial and callbacks.report_to_study)"
            )

    def _study(self, storage: Any, space: SearchSpace) -> Any:
        """The study, created or continued; its sampler seeded after the trials it has, so that a
        continued search does not draw its first trials' values again."""
        import optuna
        from hydra.utils import instantiate

        assert self.config is not None
        try:
            existing = len(storage.get_all_trials(storage.get_study_id_from_name(self.study_name), deepcopy=False))
        except KeyError:
            existing = 0
        sampler_settings = {}
        if self.sampler_config.get("seed") is not None:
            sampler_settings["seed"] = int(self.sampler_config.seed) + existing
        sampler = instantiate(self.sampler_config, **sampler_settings)
        study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            sampler=sampler,
            direction=self.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction:
            raise ConfigError(
                f"study {self.study_name} in this storage was made to {study.direction.name.lower()}, not to "
                f"{self.direction}: choose another hydra.sweeper.study_name or hydra.sweep.dir"
            )
        metric = str(self.config.optimized_metric)
        if existing and study.user_attrs.get(METRIC_ATTR, metric) != metric:
            raise ConfigError(
                f"study {self.study_name} optimises {study.user_attrs[METRIC_ATTR]}, not optimized_metric={metric}: "
                "continue it with the same metric, or start another (hydra.sweeper.study_name or hydra.sweep.dir)"
            )
        if existing and study.user_attrs.get(FIXED_ATTR, space.fixed) != space.fixed:
            log.warning(
                "continuing study %s with other settings than its trials so far had: %s (before: %s)",
                self.study_name,
                " ".join(space.fixed),
                " ".join(study.user_attrs[FIXED_ATTR]),
            )
        study.set_user_attr(METRIC_ATTR, metric)
        study.set_user_attr(FIXED_ATTR, space.fixed)
        # The jobs read the pruner from here (the DDP processes of a trial too).
        pruner = None if self.pruner_config is None else OmegaConf.to_container(self.pruner_config, resolve=True)
        study.set_user_attr(PRUNER_ATTR, pruner)
        return study

    def _run_trials(self, study: Any, storage: Any, space: SearchSpace, url: str) -> None:
        from optuna.trial import TrialState

        cut_short = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if cut_short:
            log.info(
                "%d trials were cut short and run again: %s",
                len(cut_short),
                ", ".join(str(t.number) for t in cut_short),
            )
        done_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        while True:
            done = len(study.get_trials(deepcopy=False, states=done_states))
            batch = []
            for _ in range(min(self.n_jobs, self.n_trials - done)):
                if cut_short:
                    trial = cut_short.pop(0)
                else:
                    trial = study.ask(space.distributions)
                batch.append((trial.number, dict(trial.params)))
            if not batch:
                return
            launched_by = f"{socket.gethostname()}:{os.getpid()}"
            for number, _ in batch:
                storage.set_trial_user_attr(trial_id(storage, study.study_name, number), LAUNCHED_BY_ATTR, launched_by)
            jobs = [
                trial_overrides(params)
                + space.fixed
                + [
                    f"trial.number={number}",
                    f"trial.study_name={override_value(study.study_name)}",
                    f"trial.storage={override_value(url)}",
                    self._name_after_searched_values(space),
                ]
                for number, params in batch
            ]
            log.info("trials %s of %d", ", ".join(str(number) for number, _ in batch), self.n_trials)
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for (number, _), job_return in zip(batch, returns):
                tell(study, storage, number, job_return)
            write_results(study, Path(str(self.config.hydra.sweep.dir)))

    def _name_after_searched_values(self, space: SearchSpace) -> str:
        """The override that names each trial's directory after its searched values alone: the
        fixed overrides are every trial's, and would only make the names long."""
        assert self.config is not None
        keys = list(self.config.hydra.job.config.override_dirname.exclude_keys) + space.fixed_keys
        listed = ",".join(override_value(key) for key in dict.fromkeys(keys))
        return f"hydra.job.config.override_dirname.exclude_keys=[{listed}]"

    def _conclude(self, study: Any, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            counts = {
                state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState
            }
            print(
                f"error: no trial of study {study.study_name} finished with a result "
                f"({counts['fail']} failed, {counts['pruned']} pruned; the failures are logged above)",
                flush=True,
            )
            raise SystemExit(1)
        best = study.best_trial
        params = " ".join(trial_overrides(best.params))
        log.info("best trial %d: %s %s with %s", best.number, self.config.optimized_metric, best.value, params)
        log.info("results in %s", sweep_dir / "optimization_results.yaml")


def tell(study: Any, storage: Any, number: int, job_return: JobReturn) -> None:
    """Tell the study how trial ``number``'s job ended: its value, or failed; a trial the job
    itself marked pruned stays so."""
    from optuna.trial import TrialState

    frozen = storage.get_trial(trial_id(storage, study.study_name, number))
    if frozen.state.is_finished():
        if frozen.state == TrialState.PRUNED:
            log.info("trial %d pruned at step %s", number, max(frozen.intermediate_values, default=None))
        return
    try:
        value = job_return.return_value  # raises the job's exception when it failed
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
    else:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            study.tell(number, float(value))
            return
        reason = f"its run returned {value!r}, not a finite number"
    failed(study, storage, number, reason)


def failed(study: Any, storage: Any, number: int, reason: str) -> None:
    from optuna.trial import TrialState

    log.warning("trial %d failed: %s", number, reason)
    storage.set_trial_user_attr(trial_id(storage, study.study_name, number), ERROR_ATTR, reason[:2000])
    study.tell(number, state=TrialState.FAIL)
