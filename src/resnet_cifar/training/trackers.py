"""Experiment trackers (conf/logger/): what every run tells them, whichever are chosen.

Each tracker gets the same short set of hyper-parameters (training/hparams.py) before training,
the curves that Lightning's ``self.log`` sends to every logger, and the final errors of
metrics.json at the end. A W&B run is finished with its job, so that the next job of a multirun
in the same process starts its own. MLflow and W&B are optional packages: this module imports
neither, so runs that do not use them do not pay for importing them.
"""

import contextlib
import importlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from resnet_cifar.errors import ConfigError
from resnet_cifar.training.hparams import HparamValue

# metrics.json's errors, logged as a run's final results.
RESULT_METRICS = ("test_err", "test_err_best_val", "val_err", "train_err")
# The optional packages behind loggers, found by name in a logger's ``_target_``; each is the
# project's extra of the same name.
TRACKER_PACKAGES = ("mlflow", "wandb")
# The folder of runs and sweeps in the working directory: groups are named below it.
OUTPUTS = "outputs"


def check_trackers_installed(loggers: DictConfig | None) -> None:
    """Refuse, before any work, a logger whose package is not installed, naming the install command."""
    for name, config in (loggers or {}).items():
        target = str((config or {}).get("_target_", "")).lower()
        for package in TRACKER_PACKAGES:
            if package not in target:
                continue
            try:
                importlib.import_module(package)
            except ImportError as error:
                raise ConfigError(
                    f"logger.{name} needs the {package} package, which is not installed ({error}); "
                    f"install it with pip install -e '.[{package}]' (or pip install {package}), "
                    f"or leave it out (logger=tensorboard)"
                ) from None


def log_hyperparameters(loggers: Sequence[Logger], hparams: dict[str, HparamValue]) -> None:
    """The run's short set of hyper-parameters to every tracker, before training: MLflow's
    parameters, W&B's config, TensorBoard's and the CSV logger's hparams.yaml."""
    for logger in loggers:
        logger.log_hyperparams(hparams)


def log_results(loggers: Sequence[Logger], hparams: dict[str, HparamValue], metrics: dict[str, Any], step: int) -> None:
    """metrics.json's errors to every tracker; then each tracker is written and closed.

    TensorBoard shows them in its HPARAMS tab beside the hyper-parameters (as ``hp/test_err``,
    ...); the others log them as metrics of the last step, under metrics.json's names.
    """
    results = {key: metrics[key] for key in RESULT_METRICS if metrics.get(key) is not None}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, metrics={f"hp/{key}": value for key, value in results.items()})
        else:
            logger.log_metrics(results, step=step)
        # Lightning finalized its loggers when the last test ended: written and closed again here,
        # or the results may still be in a buffer when the process exits.
        logger.finalize("success")


@contextlib.contextmanager
def finishing_trackers() -> Iterator[None]:
    """Finish the job's W&B run when the job ends, failed or not.

    Lightning's WandbLogger leaves its run open; the next job of a multirun in this process
    would log into it. ``wandb`` is looked up only if the job imported it.
    """
    failed = True
    try:
        yield
        failed = False
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)


def run_group(output_dir: str, cwd: str) -> str:
    """The name of the folder holding a run directory, for the trackers' experiments and groups:
    ``runs`` for single runs, ``multirun/<date_time>`` or ``study/<date_time>`` for a sweep
    (relative to outputs/ or the working directory where it lies inside them, else absolute).

    The same for a job's process and its DDP processes, which run it as a single run in the
    same directory.
    """
    folder = Path(output_dir).absolute().parent
    for base in (Path(cwd) / OUTPUTS, Path(cwd)):
        if folder.is_relative_to(base) and folder != base:
            return str(folder.relative_to(base))
    return str(folder)


def run_name(output_dir: str) -> str:
    """A run's name in the trackers: its directory's name (``model.depth=20,seed=0``, or the date and time)."""
    return Path(output_dir).name


def register_resolvers() -> None:
    """``${run_group:OUTPUT_DIR,CWD}`` and ``${run_name:OUTPUT_DIR}`` for conf/logger/."""
    OmegaConf.register_new_resolver("run_group", run_group, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
