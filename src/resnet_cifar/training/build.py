"""Building a run from its composed config: data module, LightningModule, trainer; and its results file."""

from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig

from resnet_cifar.data import CIFARDataModule
from resnet_cifar.training.module import ImageClassifier

METRICS_FILE = "metrics.json"


def build_datamodule(cfg: DictConfig) -> CIFARDataModule:
    return instantiate(cfg.data)


def build_module(cfg: DictConfig, **arguments: Any) -> ImageClassifier:
    """The configured LightningModule (conf/module/); ``arguments`` replace the config's."""
    return instantiate(cfg.module, **arguments)


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    """The configured Trainer with every configured callback and logger.

    Without a configured progress bar (``~callbacks.progress_bar``) there is none: Lightning
    would otherwise add its own, which counts epochs and writes control characters into logs.
    """
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    # A plugin entry builds to nothing where it does not apply (conf/trainer/default.yaml).
    built = (instantiate(plugin) for plugin in cfg.trainer.get("plugins") or [])
    overrides.setdefault("plugins", [plugin for plugin in built if plugin is not None])
    if "enable_progress_bar" not in cfg.trainer:
        overrides.setdefault("enable_progress_bar", any(isinstance(c, ProgressBar) for c in callbacks))
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)


def metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)
