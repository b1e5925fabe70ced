"""Building a run from its composed config: data module, model, trainer; and its results file."""

from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from resnet_cifar.checkpoints import AtomicCheckpointIO
from resnet_cifar.data import CIFARDataModule
from resnet_cifar.module import ImageClassifier

METRICS_FILE = "metrics.json"


def build_datamodule(cfg: DictConfig) -> CIFARDataModule:
    return instantiate(cfg.data)


def build_module(cfg: DictConfig) -> ImageClassifier:
    return ImageClassifier(
        net=instantiate(cfg.model),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        num_classes=cfg.data.num_classes,
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )


def build_trainer(cfg: DictConfig, extra_callbacks: list[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """The configured Trainer with every configured callback and logger."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    return instantiate(
        cfg.trainer,
        callbacks=callbacks + list(extra_callbacks),
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        **overrides,
    )


def metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)

