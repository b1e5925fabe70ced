"""Train one network with the paper's recipe, test it, and write the run's metrics.json.

python -m resnet_cifar.train [overrides]          e.g. model.depth=56 seed=3
python -m resnet_cifar.train -m model.depth=20,32,44,56 seed=0,1,2,3,4

The same from Python (a notebook, a script, a test)::

    from resnet_cifar.train import compose_config, train
    metrics = train(compose_config(["model.depth=56", "seed=3"], output_dir="outputs/notebook/resnet56"))
"""

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from resnet_cifar import CONFIG_DIR
from resnet_cifar.cli import exit_on_usage_error, exit_with_usage_error, raises_usage_errors
from resnet_cifar.composing import compose_command
from resnet_cifar.errors import ConfigError, UsageError
from resnet_cifar.files import refuse_links_in, write_json_atomically
from resnet_cifar.launch.ddp import ddp_job, run_ddp_processes
from resnet_cifar.overrides import refuse_null_groups
from resnet_cifar.provenance import run_environment, running_code, short_form
from resnet_cifar.renamed_configs import current_names
from resnet_cifar.resolvers import register_resolvers
from resnet_cifar.search import chosen_on_test_set
from resnet_cifar.search.pruned import RunPruned, raise_if_pruned
from resnet_cifar.training.build import METRICS_FILE, build_datamodule, build_module, build_trainer, metric
from resnet_cifar.training.callbacks import FinishAtMaxSteps, TrainingClock, utc_now
from resnet_cifar.training.checkpoints import check_same_network, read_trained
from resnet_cifar.training.hparams import run_hparams
from resnet_cifar.training.lightning_compat import relaunches_the_command
from resnet_cifar.training.quiet import silence_known_noise
from resnet_cifar.training.run_folder import (
    check_same_config,
    checkpoint_to_resume,
    finished_run_metrics,
    save_composed_config,
)
from resnet_cifar.training.trackers import (
    check_trackers_installed,
    finishing_trackers,
    log_hyperparameters,
    log_results,
)

log = logging.getLogger(__name__)
# The numbers of metrics.json, any of which ``optimized_metric`` may name.
NUMERIC_RESULTS = (
    "test_err",
    "test_loss",
    "test_err_best_val",
    "val_err",
    "val_loss",
    "train_err",
    "train_loss",
    "steps",
    "wall_s",
    "images_per_s",
)
# Those that a run without a validation split (data.val_size=0) leaves empty.
NEED_VALIDATION = ("val_err", "val_loss", "test_err_best_val")


def required_callback(trainer: L.Trainer, kind: type[L.Callback], name: str, why: str) -> Any:
    """The trainer's callback of type ``kind``; refuses a config that removed it."""
    found = [callback for callback in trainer.callbacks if isinstance(callback, kind)]
    if not found:
        raise ConfigError(f"callbacks.{name} is required ({why}); keep it in the config (conf/callbacks/default.yaml)")
    return found[0]


def best_checkpoint_path(trainer: L.Trainer) -> str:
    """The best checkpoint by validation error ("" when no callback selects one)."""
    paths = [c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor and c.best_model_path]
    return paths[0] if paths else ""


def searchable_metrics(val_size: int) -> tuple[str, ...]:
    """The numbers of metrics.json that a search may optimise: none of the test set's, and none of
    the validation split's where there is none (``data.val_size=0``)."""
    left_out = NEED_VALIDATION if val_size == 0 else ()
    return tuple(name for name in NUMERIC_RESULTS if not chosen_on_test_set(name) and name not in left_out)


def check_optimized_metric(cfg: DictConfig) -> None:
    """Refuse, before any work, an ``optimized_metric`` that the run cannot return."""
    name = cfg.optimized_metric
    hydra = HydraConfig.get()
    searching = hydra.mode == RunMode.MULTIRUN and not str(hydra.sweeper.get("_target_", "")).endswith("BasicSweeper")
    if name not in NUMERIC_RESULTS:
        choices = searchable_metrics(cfg.data.val_size) if searching else NUMERIC_RESULTS
        raise ConfigError(
            f"optimized_metric={name} is not a number in metrics.json; "
            f"{'a search may optimise' if searching else 'choose'} one of {', '.join(choices)}"
        )
    if searching and chosen_on_test_set(name):
        raise ConfigError(
            f"optimized_metric={name} would choose the hyper-parameters on the test set; "
            "a search optimises a validation or training number (optimized_metric=val_err, the default)"
        )
    if searching and name in NEED_VALIDATION and cfg.data.val_size == 0:
        raise ConfigError(
            f"optimized_metric={name} needs a validation split, and data.val_size=0 has none; "
            "keep data.val_size > 0 for a search (or optimise another metric, e.g. optimized_metric=train_loss)"
        )


def command_line(overrides: Sequence[str]) -> list[str]:
    """``overrides`` as the command takes them: a config group set to null refused
    (resnet_cifar.overrides), a config name that was renamed replaced by its new name, with a
    line naming it (resnet_cifar.renamed_configs)."""
    refuse_null_groups(overrides)
    return current_names(overrides)


def compose_config(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """conf/train.yaml composed with ``overrides`` as ``python -m resnet_cifar.train`` composes it,
    for :func:`train` called from Python. The run writes to ``output_dir``; by default to a new
    folder ``outputs/runs/<date_time>`` under the working directory (``<date_time>_2`` and so on
    where that exists or an earlier call was given it).

    Hydra's settings of the run (its output directory, its overrides) become the process's
    current Hydra config, as in a command: compose the next run's config after this one trained.
    """
    return compose_command("train", command_line(overrides), output_dir, new_folder=True)


@raises_usage_errors
def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, test and write metrics.json as the train command does; return metrics.json's values.

    ``cfg`` is a composed config: the command's, or :func:`compose_config`'s. A bad setting raises
    :class:`resnet_cifar.errors.UsageError` (or a subclass) before any work, with the message that
    the command prints after ``error:``; so does output that cannot be written. The process is left
    as it was found (environment variables, thread count, the trackers' open runs), so runs can
    follow each other.
    """
    silence_known_noise()
    with ddp_job(), finishing_trackers():
        return fit_and_test(cfg)


def fit_and_test(cfg: DictConfig) -> dict[str, Any]:
    check_optimized_metric(cfg)
    check_trackers_installed(cfg.get("logger"))
    if cfg.data.val_size == 0 and "best_checkpoint" in cfg.callbacks:  # nothing to pick the best with
        with open_dict(cfg):
            del cfg.callbacks.best_checkpoint
    output_dir = Path(cfg.paths.output_dir)
    refuse_links_in(output_dir)  # a run folder from elsewhere: nothing is read or written through a link
    check_same_config(cfg, output_dir)  # a run folder answers only for its own config
    resume_from = checkpoint_to_resume(cfg)
    checkpoint_step = None
    if resume_from:
        # Everything is built from this command's config; the checkpoint gives weights and training
        # state only, so it must hold the same network.
        trained = read_trained(resume_from)
        check_same_network(trained, OmegaConf.to_container(cfg.model, resolve=True))
        checkpoint_step = trained.step or 0
        finished = finished_run_metrics(output_dir, checkpoint_step, cfg.trainer.max_steps)
        if finished is not None:
            return finished

    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    trainer = build_trainer(cfg)
    clock = required_callback(trainer, TrainingClock, "training_clock", "metrics.json's times and images/s")
    required_callback(trainer, FinishAtMaxSteps, "finish_at_max_steps", "the final checkpoint and validation")
    datamodule.check_world_size(trainer.world_size)
    if hasattr(module, "check_trainer"):  # module=whole_step: refuse what it cannot do before any work
        module.check_trainer(trainer)
    # Only now, when every part was built and checked: a refused command leaves no run behind.
    save_composed_config(cfg, output_dir)
    if relaunches_the_command(trainer):  # this process starts the job's DDP processes and waits for them
        run_ddp_processes(trainer)
        raise_if_pruned(output_dir)  # a trial of a search that its pruner stopped
        return json.loads((output_dir / METRICS_FILE).read_text())

    if resume_from:
        log.info("resuming from %s (step %d)", resume_from, checkpoint_step)
    environment = run_environment(trainer)
    # The short set that TensorBoard's HPARAMS compares, with where the run ran; the whole config
    # is in .hydra/config.yaml, the whole environment in metrics.json.
    hparams = run_hparams(cfg, HydraConfig.get().overrides.task) | short_form(environment)
    log_hyperparameters(trainer.loggers, hparams)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    after_fit = dict(trainer.callback_metrics)
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    best_path = best_checkpoint_path(trainer)
    test_best = {}
    if best_path:
        module.test_tag = "test_best_val"
        test_best = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True)[
            0
        ]

    metrics = {
        "test_err": metric(test, "test/err"),
        "test_loss": metric(test, "test/loss"),
        "test_err_best_val": metric(test_best, "test_best_val/err"),
        "val_err": metric(after_fit, "val/err"),
        "val_loss": metric(after_fit, "val/loss"),
        "train_err": metric(after_fit, "train/err"),
        "train_loss": metric(after_fit, "train/loss"),
        "steps": trainer.global_step,
        "parameters": sum(parameter.numel() for parameter in module.net.parameters()),  # the network's
        "resumed_from": checkpoint_step,
        # Over all attempts: up to the checkpoint resumed from, then this one.
        "wall_s": round(clock.fit_seconds, 3),
        "train_s": round(clock.train_seconds, 3),  # training only: validation left out
        # The steady rate: the first step of each batch shape (compiling, CUDA-graph capture) apart.
        "images_per_s": None if clock.images_per_second is None else round(clock.images_per_second, 1),
        "compile_s": round(clock.compile_seconds, 3),
        "best_checkpoint": best_path or None,
        "started_at": clock.started_at,
        "finished_at": utc_now(),
        "environment": environment,  # the software, device, precision and commit behind these figures
    }
    log_results(trainer.loggers, hparams, metrics, trainer.global_step)
    if trainer.is_global_zero:
        write_json_atomically(output_dir / METRICS_FILE, metrics)
        log.info("test error %.2f %% after %d steps; results in %s", metrics["test_err"], metrics["steps"], output_dir)
    return metrics


register_resolvers()
running_code()  # the commit of the code this process imported, before a run can change the checkout


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
@exit_on_usage_error
def train_command(cfg: DictConfig) -> float | None:
    """Train; return ``optimized_metric`` (the validation error by default) for Hydra's sweepers.
    A trial that the search's pruner stopped returns nothing: the study knows it was pruned."""
    try:
        return train(cfg)[cfg.optimized_metric]
    except RunPruned as pruned:
        log.info("%s", pruned)
        return None


def main() -> None:
    """``python -m resnet_cifar.train`` and ``resnet-cifar-train``, with the command line checked
    and renamed config names replaced first (:func:`command_line`)."""
    try:
        sys.argv[1:] = command_line(sys.argv[1:])
    except UsageError as error:
        exit_with_usage_error(error)
    train_command()


if __name__ == "__main__":
    main()
