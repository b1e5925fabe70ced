"""Lightning's MLFlowLogger for the jobs of sweeps that share one tracking store (``logger=mlflow``).

Three things that Lightning's logger leaves to chance when several jobs use one store:

- A new SQLite store is created (its tables and migrations) by the first process that opens it;
  two jobs that open it at once both create it and one of them fails. Opening a SQLite store is
  serialised by a lock file beside the database.
- Two jobs that start at once may both find no experiment and both create it; MLflow refuses the
  second, which then uses the first one's.
- A job that resumes (a rerun after a crash, a requeue after preemption) continues the unfinished
  MLflow run of its run directory instead of starting a second one. MLflow never changes a
  parameter: one that the resumed command changed keeps its first value, with a warning.

Only the process of global rank 0 logs: Lightning creates the MLflow run on first use, there alone.
"""

import contextlib
import logging
from pathlib import Path
from typing import Any

from filelock import FileLock
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

log = logging.getLogger(__name__)
SQLITE = "sqlite:///"
# The tag that names a run's directory: how a resumed job finds its MLflow run again.
RUN_DIR_TAG = "run_dir"


def store_lock(tracking_uri: str) -> FileLock | None:
    """A lock file beside a SQLite store (None for other stores, which serve concurrent clients)."""
    if not tracking_uri.startswith(SQLITE):
        return None
    database = Path(tracking_uri.removeprefix(SQLITE))
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(database.with_name(database.name + ".lock"))


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created if there is none (also when another job creates
    it at the same time)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id


def unfinished_run(client: MlflowClient, experiment: str, run_dir: str) -> str | None:
    """The latest run of ``run_dir`` in ``experiment`` that did not finish (crashed, killed, preempted), if any."""
    unfinished = client.search_runs(
        [experiment],
        filter_string=f"attributes.status != '{RunStatus.to_string(RunStatus.FINISHED)}'",
        order_by=["attributes.start_time DESC"],
    )
    return next((run.info.run_id for run in unfinished if run.data.tags.get(RUN_DIR_TAG) == run_dir), None)


class ResumableMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, whose run a resumed job may continue with other settings."""

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any]) -> None:  # type: ignore[override]
        logged = self.experiment.get_run(self.run_id).data.params
        # Compared as Lightning's logger stores them: text, at most 250 characters.
        changed = {key: value for key, value in params.items() if logged.get(key, str(value)[:250]) != str(value)[:250]}
        if changed:
            log.warning(
                "MLflow run %s keeps the parameters it was started with: %s (this attempt: %s)",
                self.run_id,
                {key: logged[key] for key in changed},
                changed,
            )
        super().log_hyperparams({key: value for key, value in params.items() if key not in changed})


def mlflow_logger(
    tracking_uri: str, experiment_name: str, run_dir: str, tags: dict[str, Any] | None = None, **kwargs: Any
) -> ResumableMLFlowLogger:
    """Lightning's MLFlowLogger (``kwargs`` are its arguments) for the run in ``run_dir``, in the
    experiment ``experiment_name`` of the store at ``tracking_uri``; the run is tagged with its directory."""
    with store_lock(tracking_uri) or contextlib.nullcontext():
        client = MlflowClient(tracking_uri)  # creates a new store's tables
        resumed = unfinished_run(client, experiment_id(client, experiment_name), run_dir)
        return ResumableMLFlowLogger(
            experiment_name=experiment_name,
            tracking_uri=tracking_uri,
            tags={**(tags or {}), RUN_DIR_TAG: run_dir},
            run_id=resumed,
            **kwargs,
        )
