"""Building a run from its composed config: data module, model, trainer; and its results file."""

from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf
from torch import nn

from resnet_cifar.training.checkpoints import AtomicCheckpointIO
from resnet_cifar.training.hook_dispatch import DispatchOnlyImplementedHooks, NoProfiler
from resnet_cifar.data import CIFARDataModule
from resnet_cifar.training.module import ImageClassifier

METRICS_FILE = "metrics.json"
# Keys of the model config that set how the network runs (ImageClassifier), not what it is.
SPEED_KEYS = ("compile", "compile_mode", "compile_scope", "channels_last")


def build_datamodule(cfg: DictConfig) -> CIFARDataModule:
    return instantiate(cfg.data)


def build_net(cfg: DictConfig) -> nn.Module:
    """The network of ``cfg.model`` (a plain nn.Module); the speed options are the module's."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    return instantiate({key: value for key, value in model.items() if key not in SPEED_KEYS})


def build_module(cfg: DictConfig) -> ImageClassifier:
    speed = {key: cfg.model[key] for key in SPEED_KEYS if key in cfg.model}
    return ImageClassifier(
        net=build_net(cfg),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        num_classes=cfg.data.num_classes,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        **speed,
    )


def build_trainer(cfg: DictConfig, extra_callbacks: list[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """The configured Trainer with every configured callback and logger.

    Without a configured progress bar (``~callbacks.progress_bar``) there is none: Lightning
    would otherwise add its own, which counts epochs and writes control characters into logs.
    Without a configured profiler (``+trainer.profiler=simple``, ...) the profiler is
    :class:`NoProfiler`, Lightning's empty one at less host time per step.
    """
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if "enable_progress_bar" not in cfg.trainer:
        overrides.setdefault("enable_progress_bar", any(isinstance(c, ProgressBar) for c in callbacks))
    if cfg.trainer.get("profiler") is None:
        overrides.setdefault("profiler", NoProfiler())
    return instantiate(
        cfg.trainer,
        callbacks=callbacks + list(extra_callbacks) + [DispatchOnlyImplementedHooks()],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        **overrides,
    )


def metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)

