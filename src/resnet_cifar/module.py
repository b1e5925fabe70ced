"""The paper's training recipe around any classification network."""

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from resnet_cifar.metrics import top1_error

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]


class ImageClassifier(L.LightningModule):
    """Cross-entropy training with top-1 error for train, val and test.

    The scheduler steps once per optimizer step, so milestones are counted in iterations as in
    the paper. ``run_config`` (plain containers) is saved with the hyper-parameters so that a
    checkpoint describes the run that wrote it.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory,
        num_classes: int = 10,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters("num_classes", "run_config")
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.train_err = top1_error(num_classes)
        self.val_err = top1_error(num_classes)
        self.test_err = top1_error(num_classes)
        # Where test results are logged: "test", or e.g. "test_best_val" for another checkpoint.
        self.test_tag = "test"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits = self.net(images)
        loss = F.cross_entropy(logits, labels)
        self.train_err.update(logits.detach(), labels)
        # Logged tensors are read back only every log_every_n_steps; the error once per epoch.
        self.log("train/loss", loss, batch_size=len(labels))
        self.log("train/err", self.train_err, on_step=False, on_epoch=True, batch_size=len(labels))
        # The batch error (no host sync here) lets callbacks such as the warm-up react to it.
        batch_err = (logits.detach().argmax(1) != labels).float().mean() * 100
        return {"loss": loss, "err": batch_err}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_tag)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        images, labels = batch
        logits = self.net(images)
        metric = self.val_err if stage == "val" else self.test_err
        metric.update(logits, labels)
        loss = F.cross_entropy(logits, labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(labels))
        self.log(f"{stage}/err", metric, on_epoch=True, batch_size=len(labels))

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.net.parameters())
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"},
        }
