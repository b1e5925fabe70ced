"""The paper's training recipe around any classification network, as a plain LightningModule."""

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from resnet_cifar.allowed_networks import AllowedNetworks
from resnet_cifar.training.checkpoints import checkpoint_contents, read_checkpoint, trained_from_checkpoint
from resnet_cifar.training.compiling import CompiledOrEager
from resnet_cifar.training.lightning_arguments import lightning_version, module_arguments
from resnet_cifar.training.metrics import top1_error

Config = Mapping[str, Any]
# Lightning's scheduler settings for the paper's schedule: milestones counted in optimizer steps.
PER_STEP = {"interval": "step", "frequency": 1}


def plain(config: Any) -> Any:
    """A Hydra/OmegaConf config as plain dicts and lists (checkpoints hold no OmegaConf objects)."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    if isinstance(config, Mapping):
        return {key: plain(value) for key, value in config.items()}
    return config


class ImageClassifier(L.LightningModule):
    """Cross-entropy training with top-1 error (%) for train, val and test.

    ``net``, ``optimizer`` and ``scheduler`` are configs with a ``_target_`` (conf/model,
    conf/optimizer, conf/scheduler; the optimizer and scheduler as ``_partial_``), built here, so
    that a checkpoint describes its network and recipe and
    ``ImageClassifier.load_from_checkpoint(path)`` rebuilds it. ``net`` may also be an
    ``nn.Module`` (then pass it again to ``load_from_checkpoint``). ``lr_scheduler`` holds
    Lightning's scheduler settings (``interval``, ``frequency``, ``monitor``).

    Speed options, neither of which changes what is computed (docs/speed.md): ``channels_last``
    stores weights and inputs in NHWC memory format; ``compile`` runs the network through
    ``torch.compile`` (``compile_mode`` None: CUDA graphs on a GPU), or uncompiled with a warning
    where compiling fails.
    """

    def __init__(
        self,
        net: Config | nn.Module,
        optimizer: Config,
        scheduler: Config,
        lr_scheduler: Config = PER_STEP,
        num_classes: int = 10,
        channels_last: bool = True,
        compile: bool = False,
        compile_mode: str | None = None,
    ) -> None:
        super().__init__()
        given_module = isinstance(net, nn.Module)
        # Saved in checkpoints, not sent to the loggers: train.py gives every tracker the run's short
        # set of hyper-parameters instead of the whole config (training/hparams.py).
        self.save_hyperparameters(ignore=["net"] if given_module else None, logger=False)
        for name in ("net", "optimizer", "scheduler", "lr_scheduler"):
            if name in self.hparams:
                self.hparams[name] = plain(self.hparams[name])
        self.net = net if given_module else instantiate(self.hparams.net)
        self.compiled_net: CompiledOrEager | None = None
        self.val_err = top1_error(num_classes)
        self.test_err = top1_error(num_classes)
        # Where test results are logged: "test", or e.g. "test_best_val" for another checkpoint.
        self.test_tag = "test"

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path | IO[bytes],
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        trusted_targets: Iterable[str] = (),
        **kwargs: Any,
    ) -> "ImageClassifier":
        """Lightning's ``load_from_checkpoint``, with the file read as data
        (:mod:`resnet_cifar.training.checkpoints`): the module is rebuilt from the weights, the
        network's settings (its network one of the project's, or one you allow with
        ``trusted_targets``, e.g. ``["my_lab.nets"]``, or RESNET_CIFAR_TRUSTED_TARGETS), the
        optimizer and scheduler as torch.optim's, and the class's other typed arguments; nothing
        else of the file is used, from whichever of Lightning's places (``hparams_file`` included)
        it comes. Arguments passed as keywords replace the file's. ``weights_only=False`` unpickles
        the file (only for a file you trust as you trust code); its settings are still read as data."""
        contents = checkpoint_contents(checkpoint_path)
        name = str(getattr(checkpoint_path, "name", checkpoint_path))
        if weights_only is False:
            checkpoint = torch.load(io.BytesIO(contents), map_location="cpu", weights_only=False)
        else:
            checkpoint = read_checkpoint(name, io.BytesIO(contents))
        trained = trained_from_checkpoint(checkpoint, name, hparams_file)
        arguments = module_arguments(trained, cls, AllowedNetworks.default(trusted_targets), given=kwargs)
        # Only what was read as data goes on to Lightning, which restores the module from it.
        rebuilt = io.BytesIO()
        torch.save({"state_dict": trained.state_dict, "hyper_parameters": arguments, **lightning_version()}, rebuilt)
        rebuilt.seek(0)
        return super().load_from_checkpoint(rebuilt, map_location, None, strict, True, **kwargs)

    def setup(self, stage: str) -> None:
        self.prepare_network(self.trainer.strategy.root_device)  # where training runs: compile for it

    def prepare_network(self, device: torch.device) -> None:
        """Apply the memory format and compile options for running on ``device`` (idempotent)."""
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)  # the Trainer's .to(device) keeps it
        if self.hparams.compile and self.compiled_net is None:
            self.compiled_net = CompiledOrEager(self.net, self.hparams.compile_mode, device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.compiled_net(images) if self.compiled_net is not None else self.net(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        return self.step_outputs(F.cross_entropy(logits, labels), logits, labels)

    def step_outputs(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Log a training step's loss and error; its outputs for Lightning and the callbacks: the
        loss, and the batch's error (%) without a host sync (the ResNet-110 warm-up reads it).

        train/err is Lightning's epoch mean of the batch errors weighted by batch size; at the
        epoch's end it reduces the weighted sum and the batch sizes over the processes, which
        gives the error over all the epoch's training images. A torchmetrics metric gives the
        same number at more host time per step (``bench/throughput.py --host-overhead`` measures
        it; method and figures: docs/benchmarks.md#host-time-per-step).
        """
        error = (logits.argmax(1) != labels).sum() * (100 / len(labels))
        self.log("train/loss", loss, batch_size=len(labels))
        self.log_steps_done(self.global_step + 1, len(labels))
        self.log("train/err", error, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(labels))
        return {"loss": loss, "err": error}

    def log_steps_done(self, steps: int, batch_size: int, per_epoch: bool = False) -> None:
        """The step at which the trackers record this hook's values: the optimizer steps done,
        counting the one this training step makes, as the run's log and metrics.json count them.
        (Lightning's own count lags one behind: it would put a run's final validation, after step
        N, at step N - 1.) Lightning takes a logged ``step`` as that step, and then leaves out the
        ``epoch`` it adds otherwise, which is logged here too. Once an epoch or a validation, both
        are the largest over its batches and processes (all the same), reduced by one all-reduce,
        as Lightning asks of what is logged once an epoch under DDP."""
        when = {"on_step": False, "on_epoch": True, "sync_dist": True, "reduce_fx": "max"} if per_epoch else {}
        self.log("step", steps, batch_size=batch_size, **when)
        self.log("epoch", self.current_epoch, batch_size=batch_size, **when)

    def on_train_epoch_end(self) -> None:
        self.log_steps_done(self.global_step, 1, per_epoch=True)  # the epoch's train/err

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_err)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_tag, self.test_err)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, error: torch.nn.Module) -> None:
        images, labels = batch
        logits = self(images)
        error.update(logits, labels)
        loss = F.cross_entropy(logits, labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(labels))
        self.log(f"{stage}/err", error, on_epoch=True, batch_size=len(labels))
        if stage == "val":
            self.log_steps_done(self.global_step, len(labels), per_epoch=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = instantiate(self.hparams.optimizer)(self.net.parameters())
        scheduler = instantiate(self.hparams.scheduler)(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "name": "lr", **self.hparams.lr_scheduler},
        }
