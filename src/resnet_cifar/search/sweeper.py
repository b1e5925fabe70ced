"""``hydra/sweeper=optuna_study`` (chosen by ``hparams_search=lr_wd``): a hyper-parameter search with Optuna.

The search runs in rounds on Optuna's ask-and-tell interface: it asks the study for up to
``n_jobs`` trials, launches them as one batch of jobs through the configured launcher (one after
another by default; at once with ``hydra/launcher=parallel``, ``slurm`` or ``ray_cluster``), and
tells the study each job's result. Every trial is an ordinary training run that returns its
``optimized_metric`` (the validation error by default), in ``<sweep dir>/<trial number>_<values>/``
(``trial.name``: floats to three significant digits).

- The study is stored in ``hydra.sweeper.storage`` (by default the SQLite file ``optuna.db`` in the
  sweep folder). Running the same command again continues it: finished trials are kept, a
  trial that was cut short (still running in the study) runs again in its own folder, where the
  run resumes from its last checkpoint, and ``n_trials`` counts every trial of the study.
- The storage is data: a trial read back from it is rebuilt from this command's search space
  (:func:`resnet_cifar.search.space.params_in_space`). One that does not fit (a name that is not
  the space's, a value outside its range) is never run: a warning names it, and a trial the
  search would have run (cut short, or enqueued) is failed with the reason.
- A job that fails (an exception, an ``error:`` line such as a diverged loss, a lost cluster
  job) is told to the study as failed, and the search goes on.
- Each job reports its validation curve to the study itself (conf/hparams_search/lr_wd.yaml's
  ``callbacks.report_to_study``), and the pruner of the command's own config
  (``hydra/sweeper/optuna_pruner=median``) can stop it early.
- After every round the results so far are in ``<sweep dir>/optimization_results.yaml``.

The plugin that Hydra finds, hydra_plugins.resnet_cifar.optuna_study_sweeper, imports this module
only when a search runs; Optuna is imported once it is known to be installed.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from resnet_cifar.cli import exit_with_usage_error
from resnet_cifar.errors import ConfigError, UsageError
from resnet_cifar.search import require_optuna
from resnet_cifar.search.space import (
    OutsideSpace,
    SearchSpace,
    override_value,
    params_in_space,
    search_space,
    trial_name,
    trial_overrides,
)
from resnet_cifar.search.study import (
    RESULTS_FILE,
    open_storage,
    open_study,
    route_optuna_logging,
    storage_url,
    summary,
    trial_id,
    trials_in_space,
    write_results,
)
from resnet_cifar.search.trials import LAUNCHED_BY_ATTR, TrialTask, record_failure, tell

log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")
DEFAULT_STUDY_NAME = "resnet-cifar"
# What the search config's `trial` node holds for each trial's run (conf/hparams_search/lr_wd.yaml).
TRIAL_KEYS = ("number", "study_name", "storage", "name")


class OptunaStudySweeper(Sweeper):
    """Optuna's ask-and-tell loop over Hydra's launchers. The keys are those of
    conf/hydra/sweeper/optuna_study.yaml; ``sampler`` and ``pruner`` arrive as configs
    (``_target_``) and are built once Optuna is known to be installed."""

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
        require_optuna()
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
        # Trials of the study that do not fit the search space, each warned about once.
        self.skipped: set[int] = set()

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

    @property
    def metric(self) -> str:
        assert self.config is not None
        return str(self.config.optimized_metric)

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
        study = open_study(storage, self.study_name, self.direction, self.sampler_config, self.metric, space)
        log.info(
            "study %s in %s (see it with: optuna-dashboard %s); %s %s over %s; %d trials",
            study.study_name,
            url,
            url,
            self.direction,
            self.metric,
            ", ".join(space.distributions),
            self.n_trials,
        )
        try:
            self._run_trials(study, storage, space, url)
        finally:
            write_results(study, space, self.metric, sweep_dir)
        self._conclude(study, space, sweep_dir)

    def _check_settings(self) -> None:
        from hydra.utils import instantiate

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
        trial = self.config.get("trial")
        if not isinstance(trial, DictConfig) or not set(TRIAL_KEYS) <= set(trial):
            raise ConfigError(
                f"the search config's `trial` node, through which each run learns its trial, needs the keys "
                f"{', '.join(TRIAL_KEYS)}: start from conf/hparams_search/lr_wd.yaml "
                "(trial and callbacks.report_to_study)"
            )
        if self.pruner_config is not None:
            try:  # each trial's run builds it: a pruner that cannot be built is refused once, here
                instantiate(self.pruner_config)
            except Exception as error:
                raise ConfigError(f"hydra.sweeper.pruner cannot be built: {' '.join(str(error).split())}") from None

    def _run_trials(self, study: Any, storage: Any, space: SearchSpace, url: str) -> None:
        from optuna.trial import TrialState

        cut_short = self._cut_short(study, storage, space)
        for number, why in trials_in_space(study, space)[1].items():
            if number not in self.skipped:
                log.warning("trial %d of study %s is left out of the results: %s", number, study.study_name, why)
                self.skipped.add(number)
        done_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

        def room() -> int:  # n_trials counts every trial of the study
            return self.n_trials - len(study.get_trials(deepcopy=False, states=done_states))

        while True:
            batch: list[tuple[int, dict[str, Any]]] = []
            while len(batch) < min(self.n_jobs, room()):
                if cut_short:
                    batch.append(cut_short.pop(0))
                    continue
                trial = study.ask(space.distributions)
                try:  # a trial enqueued in the study runs with the values it was given, within the space or not
                    batch.append((trial.number, params_in_space(space, trial.params)))
                except OutsideSpace as why:
                    self._skip(study, storage, trial.number, why)
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
                    f"trial.name={override_value(trial_name(number, params))}",
                ]
                for number, params in batch
            ]
            log.info("trials %s of %d", ", ".join(str(number) for number, _ in batch), self.n_trials)
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for (number, _), job_return in zip(batch, returns):
                tell(study, storage, number, job_return)
            write_results(study, space, self.metric, Path(str(self.config.hydra.sweep.dir)))

    def _cut_short(self, study: Any, storage: Any, space: SearchSpace) -> list[tuple[int, dict[str, Any]]]:
        """The trials still running in the study (their command was stopped), with their values
        rebuilt from the space, to run again; one that does not fit the space is failed."""
        from optuna.trial import TrialState

        resumed = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            try:
                resumed.append((trial.number, params_in_space(space, trial.params)))
            except OutsideSpace as why:
                self._skip(study, storage, trial.number, why)
        if resumed:
            log.info(
                "%d trials were cut short and run again: %s",
                len(resumed),
                ", ".join(str(number) for number, _ in resumed),
            )
        return resumed

    def _skip(self, study: Any, storage: Any, number: int, why: OutsideSpace) -> None:
        """Trial ``number`` does not fit the space: it is not run, and is failed with the reason."""
        log.warning("trial %d of study %s is skipped, not run: %s", number, study.study_name, why)
        record_failure(study, storage, number, f"skipped, not run: {why}")
        self.skipped.add(number)

    def _conclude(self, study: Any, space: SearchSpace, sweep_dir: Path) -> None:
        result = summary(study, space, self.metric)
        if result["best_trial"] is None:
            counts = result["n_trials"]
            print(
                f"error: no trial of study {study.study_name} finished with a result "
                f"({counts.get('failed', 0)} failed, {counts.get('pruned', 0)} pruned; the failures are logged above)",
                flush=True,
            )
            raise SystemExit(1)
        params = " ".join(trial_overrides(result["best_params"]))
        log.info("best trial %d: %s %s with %s", result["best_trial"], self.metric, result["best_value"], params)
        log.info("results in %s", sweep_dir / RESULTS_FILE)
