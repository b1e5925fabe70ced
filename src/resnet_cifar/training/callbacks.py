"""Callbacks for the paper's protocol that Lightning does not ship."""

import math
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch

from resnet_cifar.errors import TrainingDiverged


class FinishAtMaxSteps(L.Callback):
    """At the last training step: save ``last_checkpoint``, then stop, validating once more.

    Lightning validates at epoch ends only; when ``max_steps`` stops training mid-epoch the
    final weights would go unvalidated. Requesting a stop at the last step makes the epoch loop
    validate before it exits. The checkpoint is written here, inside the loop, so that it
    records the data position as a periodic one does: a later run with more steps continues
    from it exactly as an uninterrupted run would.

    That final validation comes after the save, so when training ends the checkpoint callbacks'
    state in the file is brought up to date: a later run with more steps knows the best
    checkpoint that validation saved, instead of versioning a second one beside it
    (best-v1.ckpt) or replacing it with weights that validated worse.
    """

    def __init__(self, last_checkpoint: str | Path) -> None:
        self.last_checkpoint = Path(last_checkpoint)
        self.saving_final = False
        self.final_checkpoint: dict[str, Any] | None = None  # as saved, to write again when training ends

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            self.saving_final = True
            trainer.save_checkpoint(self.last_checkpoint, weights_only=False)  # all state, to resume from
            self.saving_final = False
            trainer.should_stop = True

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.saving_final:
            self.final_checkpoint = checkpoint

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.final_checkpoint is None:
            return
        # Validation changes neither weights nor optimizer: only the checkpoint callbacks' state is new.
        for callback in trainer.checkpoint_callbacks:
            self.final_checkpoint["callbacks"][callback.state_key] = callback.state_dict()
        trainer.strategy.save_checkpoint(self.final_checkpoint, self.last_checkpoint)
        trainer.strategy.barrier("final checkpoint brought up to date")
        self.final_checkpoint = None


class LrWarmupUntilTrainError(L.Callback):
    """ResNet-110's warm-up: train at ``factor`` x lr until training error < ``max_train_err`` %.

    The error is averaged over the last ``window`` steps. The learning rate is scaled in place,
    so any chainable scheduler keeps working underneath.
    """

    def __init__(self, factor: float = 0.1, max_train_err: float = 80.0, window: int = 20) -> None:
        self.factor = factor
        self.max_train_err = max_train_err
        self.window = window
        self.state = "pending"  # -> "warming" -> "done"
        self.recent_errors: deque[torch.Tensor] = deque(maxlen=window)

    def _scale_lr(self, trainer: L.Trainer, factor: float) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= factor

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state == "pending":
            self._scale_lr(trainer, self.factor)
            self.state = "warming"

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.state != "warming":
            return
        # The same decision on every process: average the batch error over all of them.
        self.recent_errors.append(trainer.strategy.reduce(outputs["err"], reduce_op="mean"))
        if len(self.recent_errors) == self.window and torch.stack(list(self.recent_errors)).mean() < self.max_train_err:
            self._scale_lr(trainer, 1 / self.factor)
            self.state = "done"
            pl_module.log("warmup_end_step", float(trainer.global_step), rank_zero_only=True)

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state = state_dict["state"]


class TrainingClock(L.Callback):
    """When the run started, wall time of its fits and the steady training throughput (images/s,
    validation excluded), over all attempts of a resumed run.

    The first training step of every batch shape a process meets (the batch of 128, an epoch's
    short last batch) is where torch.compile compiles, CUDA graphs are captured and cuDNN picks
    its algorithms: on a GPU that can be a minute against a two-minute run. Those steps are timed
    apart, as ``compile_seconds``, and left out of ``images_per_second``; ``train_seconds`` and
    ``fit_seconds`` keep them. The totals travel in every checkpoint, so a resumed run counts
    the time up to the checkpoint it resumed from plus its own (steps redone after an
    interruption count once; a resumed process compiles again, and that counts too).
    """

    def __init__(self) -> None:
        self.started_at = ""
        self.images = 0
        self.train_seconds = 0.0
        self.fit_seconds = 0.0
        self.compile_seconds = 0.0  # in the first training step of each batch shape
        self.compile_images = 0  # the images of those steps
        self._fit_seconds_before = 0.0  # in earlier attempts, up to the checkpoint resumed from
        self._fit_started = time.perf_counter()
        self._since: float | None = None  # the training clock runs since then
        self._shapes_seen: set[tuple[int, ...]] = set()  # by this process: each compiles anew
        self._compile_step_since: float | None = None  # the step running now is a first one

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started_at = self.started_at or utc_now()
        self._fit_started = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_train_epoch_start: Lightning skips it when a run resumes mid-epoch.
        self._resume_clock()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause_clock(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resume_clock()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Counted at the start: checkpoints written at this step's end then include its batch.
        images = batch_images(batch) * trainer.world_size
        self.images += images
        shape = tuple(batch[0].shape)
        if shape not in self._shapes_seen:
            self._shapes_seen.add(shape)
            self.compile_images += images
            synchronize(pl_module)  # the steps queued before this one are steady time
            self._compile_step_since = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._compile_step_since is not None:
            synchronize(pl_module)  # this step's compiling and capture, done
            self.compile_seconds += time.perf_counter() - self._compile_step_since
            self._compile_step_since = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause_clock(pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_seconds = self._fit_seconds_now()

    def _fit_seconds_now(self) -> float:
        return self._fit_seconds_before + time.perf_counter() - self._fit_started

    def _resume_clock(self) -> None:
        self._since = time.perf_counter()

    def _pause_clock(self, pl_module: L.LightningModule) -> None:
        if self._since is None:
            return
        synchronize(pl_module)  # count the queued work as training time
        self.train_seconds += time.perf_counter() - self._since
        self._since = None

    def state_dict(self) -> dict[str, Any]:
        # Checkpoints are written mid-training (and mid-step): count the running stretches
        # without stopping them.
        now = time.perf_counter()
        running = now - self._since if self._since is not None else 0.0
        compiling = now - self._compile_step_since if self._compile_step_since is not None else 0.0
        return {
            "started_at": self.started_at,
            "images": self.images,
            "train_seconds": self.train_seconds + running,
            "fit_seconds": self._fit_seconds_now(),
            "compile_seconds": self.compile_seconds + compiling,
            "compile_images": self.compile_images,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.started_at = state_dict["started_at"]
        self.images = state_dict["images"]
        self.train_seconds = state_dict["train_seconds"]
        self._fit_seconds_before = state_dict["fit_seconds"]
        # Checkpoints written before the compile steps were timed apart have neither.
        self.compile_seconds = state_dict.get("compile_seconds", 0.0)
        self.compile_images = state_dict.get("compile_images", 0)

    @property
    def images_per_second(self) -> float | None:
        """Steady training images/s: the first step of each batch shape left out (None when a
        run had no other step)."""
        steady_seconds = self.train_seconds - self.compile_seconds
        steady_images = self.images - self.compile_images
        return steady_images / steady_seconds if steady_images > 0 and steady_seconds > 0 else None


def batch_images(batch: Any) -> int:
    """The number of images of a training batch: (images, labels), or the raw
    (images, crop_flip, labels) of module=whole_step; the images come first in both."""
    return len(batch[0])


def synchronize(pl_module: L.LightningModule) -> None:
    """Wait for the module's GPU to finish its queued work (nothing to wait for on the CPU)."""
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StopOnNonFiniteLoss(L.Callback):
    """Stop at once when the training loss is NaN or infinite, naming the step.

    It runs before ModelCheckpoint (Lightning runs checkpoint callbacks last), and refuses every
    checkpoint of weights that are no longer finite, so the last good checkpoint is never replaced
    by diverged ones. Where looking at the loss costs a host sync (GPU) or a collective (several
    DDP processes) it looks every ``sync_check_every_n_steps`` steps and before every checkpoint,
    keeping on the device the first step whose loss was not finite; a single CPU process looks
    every ``check_every_n_steps`` (at every step, the default, it just reads the number). Under
    DDP the processes decide together (the earliest bad step of any of them), so a loss that is
    not finite on one process only stops all of them at the same check, with the same message.
    """

    def __init__(self, check_every_n_steps: int = 1, sync_check_every_n_steps: int = 25) -> None:
        self.check_every_n_steps = check_every_n_steps
        self.sync_check_every_n_steps = sync_check_every_n_steps
        self.first_bad_step: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"].detach()
        # The step this loss belongs to (global_step has counted its optimizer step already).
        step = trainer.global_step - 1
        if loss.device.type == "cpu" and trainer.world_size == 1 and self.check_every_n_steps == 1:
            if not math.isfinite(loss):  # reading a CPU number costs nothing: one look, no bookkeeping
                raise diverged(f"the loss became NaN or infinite at step {step}")
            return
        if self.first_bad_step is None or self.first_bad_step.device != loss.device:
            self.first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad_now = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad_now, step, self.first_bad_step)
        free_to_look = loss.device.type == "cpu" and trainer.world_size == 1
        every = self.check_every_n_steps if free_to_look else self.sync_check_every_n_steps
        if trainer.global_step % every == 0:
            self._stop_if_diverged(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Every process saves (and so comes here) at the same step: a collective is safe.
        if self.first_bad_step is not None:
            self._stop_if_diverged(trainer)
        if not torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()]).all():
            raise diverged(f"the weights became NaN or infinite by step {trainer.global_step}")

    def _stop_if_diverged(self, trainer: L.Trainer) -> None:
        first_bad = self.first_bad_step
        if trainer.world_size > 1:
            never = torch.iinfo(torch.long).max
            first_bad = trainer.strategy.reduce(torch.where(first_bad >= 0, first_bad, never), reduce_op="min")
            first_bad = torch.where(first_bad == never, -1, first_bad)
        if int(first_bad) >= 0:
            raise diverged(f"the loss became NaN or infinite at step {int(first_bad)}")


def diverged(what: str) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged: {what}; the run stopped and its last good checkpoint is kept. "
        "Lower optimizer.lr, or warm up as ResNet-110 does (experiment=resnet110), and start again"
    )
