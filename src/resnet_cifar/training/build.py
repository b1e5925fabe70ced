"""Building a run from its composed config: data module, LightningModule, trainer; and its results file."""

from typing import Any

import lightning as L
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import DeviceStatsMonitor, LearningRateMonitor, ProgressBar
from omegaconf import DictConfig

from resnet_cifar.data import CIFARDataModule
from resnet_cifar.errors import ConfigError
from resnet_cifar.training.accelerators import check_accelerator_available
from resnet_cifar.training.module import ImageClassifier

METRICS_FILE = "metrics.json"
# Lightning's callbacks that write only through a logger, and stop a run that has none. The
# project's own TensorBoard callbacks (input_preview, tensorboard_layout) write nothing where
# there is no TensorBoard logger, and need none.
NEED_A_LOGGER = (LearningRateMonitor, DeviceStatsMonitor)


def build_datamodule(cfg: DictConfig) -> CIFARDataModule:
    return instantiate(cfg.data)


def build_module(cfg: DictConfig, **arguments: Any) -> ImageClassifier:
    """The configured LightningModule (conf/module/); ``arguments`` replace the config's."""
    return instantiate(cfg.module, **arguments)


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    """The configured Trainer with every configured callback and logger.

    Without a configured progress bar (``~callbacks.progress_bar``) there is none: Lightning
    would otherwise add its own, which counts epochs and writes control characters into logs.
    An accelerator that this machine lacks, and callbacks that need a logger in a run without
    any, are refused before anything is built.
    """
    check_accelerator_available(cfg.trainer.accelerator)
    check_callbacks_have_a_logger(cfg.get("callbacks"), cfg.get("logger"))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    # A plugin entry builds to nothing where it does not apply (conf/trainer/default.yaml).
    built = (instantiate(plugin) for plugin in cfg.trainer.get("plugins") or [])
    overrides.setdefault("plugins", [plugin for plugin in built if plugin is not None])
    if "enable_progress_bar" not in cfg.trainer:
        overrides.setdefault("enable_progress_bar", any(isinstance(c, ProgressBar) for c in callbacks))
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)


def check_callbacks_have_a_logger(callbacks: DictConfig | None, loggers: DictConfig | None) -> None:
    """Refuse callbacks that write through a logger (lr_monitor) in a run without any, naming both
    ways out; Lightning would stop at the start of training with a message naming neither."""
    if any(config is not None for config in (loggers or {}).values()):
        return
    needing = {
        name: kind.__name__
        for name, config in (callbacks or {}).items()
        for kind in [configured_class(config)]
        if kind is not None and issubclass(kind, NEED_A_LOGGER)
    }
    if needing:
        named = ", ".join(f"callbacks.{name} ({kind})" for name, kind in needing.items())
        removals = " ".join(f"'~callbacks.{name}'" for name in needing)
        writes, them = ("writes", "the callback") if len(needing) == 1 else ("write", "these callbacks")
        raise ConfigError(
            f"{named} {writes} through a logger, and this run has no logger; keep one (logger=tensorboard, "
            f"the default, or e.g. logger=csv), or remove {them} too: {removals}"
        )


def configured_class(config: Any) -> type | None:
    """The class that a config's ``_target_`` names (None where it names none, or none that
    imports: building it then says why)."""
    target = (config or {}).get("_target_")
    try:
        found = get_object(str(target)) if target else None
    except (ImportError, ValueError):
        return None
    return found if isinstance(found, type) else None


def metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)
