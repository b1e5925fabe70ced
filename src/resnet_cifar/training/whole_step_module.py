"""``module=whole_step``: the ImageClassifier whose training step is one compiled graph.

The step (:class:`resnet_cifar.training.whole_step.WholeTrainingStep`: augmentation, forward,
backward, SGD update and BN statistics) runs inside ``training_step``; Lightning's automatic
optimisation goes on around it as for any module: it calls the optimizer's step with the training
step as closure, counts the step and steps the scheduler. There is nothing left for it to do
with gradients: it is told to leave out zeroing them and the backward pass
(:func:`resnet_cifar.training.lightning_compat.skip_backward`), and the optimizer finds none.
So everything Lightning would do with gradients is refused before any work, with one ``error:``
line each.

Its logging gives the same curves and metrics as ImageClassifier's at less host time per step:
the step computes the batch error inside its graph; ``train/loss`` is logged only on the steps
whose values Lightning writes (every ``trainer.log_every_n_steps``, none for 0), an epoch's last
and the final step (which metrics.json reads), and ``train/err`` once an epoch, from a running
sum kept on the device. What ImageClassifier's two ``self.log`` calls per step cost in host time
is measured by ``bench/throughput.py --host-overhead --compile`` (docs/benchmarks.md#host-time-per-step).
"""

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from resnet_cifar.data.datamodule import RawTrainBatch
from resnet_cifar.errors import ConfigError
from resnet_cifar.training.build import configured_class
from resnet_cifar.training.compiling import CompiledOrEager
from resnet_cifar.training.lightning_compat import skip_backward
from resnet_cifar.training.module import ImageClassifier
from resnet_cifar.training.whole_step import StepResult, WholeTrainingStep, check_optimizer

GRADIENT_HOOKS = ("on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")
USE_CLASSIFIER = "or use module=classifier, which supports it"


def implements(owner: object, hook: str, base: type) -> bool:
    """Whether ``owner``'s ``hook`` is its own, not the empty one inherited from ``base``."""
    function = getattr(owner, hook)
    return getattr(function, "__func__", function) is not getattr(base, hook)


def check_schedule(scheduler: dict[str, Any], schedule: dict[str, Any]) -> None:
    """Refuse a scheduler that is not stepped after every optimizer step, as the whole step needs.

    ReduceLROnPlateau (scheduler=plateau) steps on a validation metric, which stepping it after
    every optimizer step would ask for before the first validation: no setting of
    module.lr_scheduler makes it work here, so the way out is another scheduler or module.
    """
    found = configured_class(scheduler)
    if found is not None and issubclass(found, ReduceLROnPlateau):
        raise ConfigError(
            f"module=whole_step steps the scheduler after every optimizer step, and {found.__name__} "
            f"(scheduler=plateau) can only step after a validation, on {schedule.get('monitor', 'val/err')}; "
            "use module=classifier, which steps it after each validation, or a scheduler counted in "
            "optimizer steps (scheduler=multistep)"
        )
    interval, frequency = schedule.get("interval", "step"), schedule.get("frequency", 1)
    if interval != "step" or frequency != 1:
        raise ConfigError(
            f"module=whole_step steps the scheduler after every optimizer step, and it is set to step every "
            f"{frequency} {interval}; set module.lr_scheduler.interval=step and module.lr_scheduler.frequency=1 "
            f"(the scheduler's own counts, such as StepLR's step_size, are then in optimizer steps), {USE_CLASSIFIER}"
        )


class WholeStepClassifier(ImageClassifier):
    """ImageClassifier training with the whole step compiled as one graph (``compile=false``: the
    same step function, uncompiled). Takes the same arguments, so either class loads the other's
    checkpoints; the results are those of ImageClassifier (tests/training/test_whole_step.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.whole_step: WholeTrainingStep | None = None
        self.compiled_step: Callable[..., StepResult] | None = None  # step.run, compiled or not
        # The epoch's train/err so far: the sum of batch errors times batch sizes, and the images.
        self.epoch_error_sum = torch.zeros(())
        self.epoch_images = 0
        check_schedule(self.hparams.scheduler, self.hparams.lr_scheduler)

    def check_trainer(self, trainer: L.Trainer) -> None:
        """Refuse, before any work, a trainer that the whole step cannot train with."""
        refusals = [
            (trainer.world_size > 1, f"DDP ({trainer.world_size} processes: the step does not all-reduce gradients)"),
            (
                getattr(trainer.precision_plugin, "scaler", None) is not None,
                "fp16 loss scaling (trainer.precision=16-mixed; bf16-mixed and 32-true need none)",
            ),
            (bool(trainer.gradient_clip_val), "gradient clipping (trainer.gradient_clip_val)"),
            (trainer.accumulate_grad_batches != 1, "gradient accumulation (trainer.accumulate_grad_batches)"),
        ]
        for hook in GRADIENT_HOOKS:
            refusals += [
                (implements(c, hook, L.Callback), f"{type(c).__name__}.{hook}, a callback's gradient hook")
                for c in trainer.callbacks
            ]
            refusals.append(
                (implements(self, hook, L.LightningModule), f"{type(self).__name__}.{hook}, a gradient hook")
            )
        for refused, what in refusals:
            if refused:
                raise ConfigError(
                    f"module=whole_step has no gradients to show and cannot do {what}; remove it, {USE_CLASSIFIER}"
                )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        self.check_trainer(self.trainer)
        skip_backward(self.trainer, True)
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "training_inputs"):
            raise ConfigError(
                "module=whole_step augments inside the step and needs the project's CIFAR data module; "
                f"{USE_CLASSIFIER}"
            )
        datamodule.defer_train_augmentation = True  # the batches arrive raw: see RawTrainBatch

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            skip_backward(self.trainer, False)  # the Trainer may fit another module next

    def configure_optimizers(self) -> dict[str, Any]:
        configured = super().configure_optimizers()
        check_optimizer(configured["optimizer"])
        return configured

    def training_step(self, batch: RawTrainBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        step = self._step()
        step.sync_with_optimizer()  # the scheduler's learning rate, a resumed run's momentum
        result = StepResult(*self.compiled_step(*batch))
        if getattr(self.compiled_step, "cuda_graphs", False):
            # A CUDA graph's outputs live in its own memory, overwritten by the next replay:
            # what Lightning and the callbacks keep must be copies.
            result = StepResult(*(output.clone() for output in result))
        images = len(batch.labels)
        self.epoch_error_sum.add_(result.error, alpha=images)
        self.epoch_images += images
        if self._written_this_step():
            self.log("train/loss", result.loss, batch_size=images)
            self.log_steps_done(self.trainer.global_step + 1, images)
        return {"loss": result.loss, "err": result.error}

    def _written_this_step(self) -> bool:
        """Whether this step's loss is logged: on the steps whose logged values Lightning writes
        (every ``log_every_n_steps`` steps; never for 0, as in Lightning), and at an epoch's last
        batch and the last step, which leave the final values (metrics.json's) as ImageClassifier's."""
        trainer, step = self.trainer, self.trainer.global_step + 1
        every_n = trainer.log_every_n_steps
        return (every_n > 0 and step % every_n == 0) or step == trainer.max_steps or trainer.is_last_batch

    def on_train_epoch_start(self) -> None:
        self.epoch_error_sum = torch.zeros((), device=self.device)
        self.epoch_images = 0

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        # ImageClassifier's train/err: the epoch's batch errors weighted by their batch sizes.
        if self.epoch_images:
            self.log(
                "train/err", self.epoch_error_sum / self.epoch_images, on_step=False, on_epoch=True, sync_dist=True
            )

    def _step(self) -> WholeTrainingStep:
        """The step function, built at the first step (the optimizer exists, a resumed run's
        state is restored) and compiled then if ``compile``."""
        if self.whole_step is None:
            optimizer = self.optimizers().optimizer
            step = WholeTrainingStep(
                self.net, optimizer, self.trainer.datamodule.training_inputs, self.hparams.channels_last
            )
            self.whole_step = step
            # fullgraph: a graph break would split the step silently; fail and fall back instead.
            self.compiled_step = (
                CompiledOrEager(step.run, self.hparams.compile_mode, self.device, fullgraph=True)
                if self.hparams.compile
                else step.run
            )
        return self.whole_step

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Run the step (Lightning's closure: ``training_step``, without backward), which updates
        the weights itself. Lightning's wrapping of the optimizer's step (precision
        plugin, gradient hooks, clipping) has no gradients to act on and is left out; the
        optimizer's own step, which finds none either, tells the scheduler that a step was made.
        Lightning counts the step and steps the scheduler as for any module."""
        optimizer_closure()
        optimizer.optimizer.step()
