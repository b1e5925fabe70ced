"""A trial's job, and what the study is told when it ends: its value, or failed with the reason.

Optuna is imported only once the sweeper knows it is installed.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from hydra.core.utils import JobReturn
from hydra.types import TaskFunction
from omegaconf import DictConfig

from resnet_cifar.cli import USAGE_ERROR_EXIT_CODE
from resnet_cifar.search.study import trial_id

log = logging.getLogger(__name__)
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
    log.warning("trial %d failed: %s", number, reason)
    record_failure(study, storage, number, reason)


def record_failure(study: Any, storage: Any, number: int, reason: str) -> None:
    """Trial ``number`` failed, for ``reason`` (kept in the trial's ``error`` attribute)."""
    from optuna.trial import TrialState

    storage.set_trial_user_attr(trial_id(storage, study.study_name, number), ERROR_ATTR, reason[:2000])
    study.tell(number, state=TrialState.FAIL)
