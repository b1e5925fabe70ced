"""A trial's side of the search: its validation curve goes to the study, and it stops when the
pruner says so.

The sweeper starts each trial as an ordinary training run with ``trial.number``,
``trial.study_name`` and ``trial.storage`` set (conf/hparams_search/lr_wd.yaml passes them to
this callback, with the pruner of the command's own config, ``hydra.sweeper.pruner``). After
every validation the run's global rank 0 writes the monitored value at the current step into the
study, through the storage every job shares (a trial on another node of a cluster included), and
asks the pruner whether the trial goes on. A pruned trial is marked pruned in the study, writes
``pruned.json`` into its folder, and ends with :class:`~resnet_cifar.search.pruned.RunPruned` on
all its processes (a DDP job's ranks agree on it).

The study's storage is data: the run takes the other trials' curves from it (the pruner compares
with them), never a setting.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L

from resnet_cifar.errors import ConfigError
from resnet_cifar.search.pruned import RunPruned, describe_pruned, write_pruned
from resnet_cifar.search.study import RUN_DIR_ATTR, open_storage, trial_id

log = logging.getLogger(__name__)


class ReportToStudy(L.Callback):
    """Report ``monitor`` after each validation to trial ``trial`` of ``study_name`` in
    ``storage``, and stop the run when ``pruner`` (an Optuna pruner; None: never) prunes the
    trial. Does nothing when ``trial`` is None (a run that is not a trial of a search)."""

    def __init__(
        self,
        trial: int | None,
        study_name: str | None,
        storage: str | None,
        run_dir: str | Path,
        monitor: str = "val/err",
        pruner: Any = None,
    ) -> None:
        self.trial = trial
        self.pruner = pruner
        self.study_name = study_name
        self.storage_url = storage
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self._study: Any = None
        self._storage: Any = None
        self._trial_id: int | None = None

    @property
    def active(self) -> bool:
        return self.trial is not None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.active or stage != "fit":
            return
        if not (self.study_name and self.storage_url):
            raise ConfigError(
                f"trial.number={self.trial} needs trial.study_name and trial.storage (the sweeper sets all three)"
            )
        if not trainer.is_global_zero or self._study is not None:
            return
        import optuna

        self._storage = open_storage(self.storage_url)
        self._trial_id = trial_id(self._storage, self.study_name, int(self.trial))
        pruner = self.pruner if self.pruner is not None else optuna.pruners.NopPruner()
        self._study = optuna.load_study(study_name=self.study_name, storage=self._storage, pruner=pruner)
        if self._storage.get_trial(self._trial_id).state.is_finished():
            log.warning(
                "trial %s of study %s has finished already; this run reports nothing", self.trial, self.study_name
            )
            self._study = None
            return
        self._storage.set_trial_user_attr(self._trial_id, RUN_DIR_ATTR, str(self.run_dir.absolute()))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        step = trainer.global_step
        value = trainer.callback_metrics.get(self.monitor)
        value = None if value is None else float(value)
        prune = False
        if self._study is not None and value is not None and math.isfinite(value):
            prune = self._report(step, value, final=0 < trainer.max_steps <= step)
        if trainer.world_size > 1:
            prune = bool(trainer.strategy.broadcast(prune, src=0))
        if not prune:
            return
        record = {
            "trial": self.trial,
            "study_name": self.study_name,
            "step": step,
            "monitor": self.monitor,
            "value": value,
        }
        if trainer.is_global_zero:
            write_pruned(self.run_dir, record)
            from optuna.trial import TrialState

            self._study.tell(int(self.trial), state=TrialState.PRUNED, skip_if_finished=True)
        raise RunPruned(describe_pruned(record))

    def _report(self, step: int, value: float, final: bool) -> bool:
        """Write ``value`` at ``step`` (once: a resumed run validates some steps again); whether
        the pruner prunes the trial now (never at the final step: the trial is complete)."""
        if step not in self._storage.get_trial(self._trial_id).intermediate_values:
            self._storage.set_trial_intermediate_value(self._trial_id, step, value)
        if final:
            return False
        return bool(self._study.pruner.prune(self._study, self._storage.get_trial(self._trial_id)))
