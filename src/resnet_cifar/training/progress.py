"""The run's progress counted in optimizer steps: a live bar on a terminal, plain lines elsewhere.

Schedules are counted in steps (``trainer.max_steps``) and epochs are open-ended
(``max_epochs=-1``), so Lightning's per-epoch bar (``Epoch 0/-2``) says nothing about when a run
ends. This bar shows ``step 1200/64000``, the rate and the time left for the whole run, with the
epoch beside it. Where stdout is not a terminal (a pipe, ``| tee``, a SLURM log file, CI) a live
bar writes control characters, so a plain line is logged instead every ``line_every_n_steps``
steps or ``line_every_s`` seconds.

Both are cheap per step: between redraws (or lines) a step costs one clock read and a counter;
the loss is read from the device only when it is shown, never every step.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import CustomBarColumn
from rich import get_console, reconfigure
from rich.progress import ProgressColumn, Task, TextColumn
from rich.text import Text

from resnet_cifar.errors import ConfigError
from resnet_cifar.training.callbacks import batch_images
from resnet_cifar.training.lightning_compat import show_rich_metrics, start_rich_progress

log = logging.getLogger(__name__)
VALIDATION_SHOWN = {"val/err": ".2f", "val/loss": ".4f"}  # and their formats


def duration(seconds: float | None) -> str:
    """``h:mm:ss``, or ``-:--:--`` while unknown."""
    return "-:--:--" if seconds is None else str(timedelta(seconds=int(seconds)))


def is_training_task(task: Task) -> bool:
    return bool(task.fields.get("steps"))


class StepsColumn(ProgressColumn):
    """``step 1200/64000`` for training, ``3/5`` batches for validation and testing."""

    def render(self, task: Task) -> Text:
        done = f"{int(task.completed)}/{int(task.total) if task.total is not None else '--'}"
        return Text(f"step {done}" if is_training_task(task) else done)


class RateAndTimeColumn(ProgressColumn):
    """``38.2 steps/s  0:05:12 elapsed  0:27:05 left``: Rich's rate over its last 30 s of samples."""

    def render(self, task: Task) -> Text:
        unit = "steps/s" if is_training_task(task) else "it/s"
        rate = f"{task.speed:.1f} {unit}" if task.speed is not None else f"- {unit}"
        return Text(f"{rate}  {duration(task.elapsed)} elapsed  {duration(task.time_remaining)} left", style="dim")


class StepProgressBar(RichProgressBar):
    """Progress in optimizer steps over the whole run: a live Rich bar on a terminal, and a plain
    line every ``line_every_n_steps`` steps or ``line_every_s`` seconds (whichever comes first;
    either may be None) where stdout is not one (step/max_steps, epoch, loss, lr, images/s, time
    left), plus one line per validation with its errors.

    ``refresh_rate`` is the live bar's redraws per second; the bar's figures are updated at the
    same bounded rate, not every step. Rich decides what a terminal is (``isatty``, or the
    ``TTY_COMPATIBLE`` and ``FORCE_COLOR`` environment variables).
    """

    def __init__(
        self,
        refresh_rate: float = 2,
        line_every_n_steps: int | None = None,
        line_every_s: float | None = 30.0,
        console_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if refresh_rate <= 0:
            raise ConfigError(
                f"callbacks.progress_bar.refresh_rate={refresh_rate}: must be > 0 (redraws per second); "
                "to show no progress, remove the callback: ~callbacks.progress_bar"
            )
        for name, value in (("line_every_n_steps", line_every_n_steps), ("line_every_s", line_every_s)):
            if value is not None and value <= 0:
                raise ConfigError(f"callbacks.progress_bar.{name}={value}: must be > 0, or null to leave it out")
        if line_every_n_steps is None and line_every_s is None:
            raise ConfigError(
                "callbacks.progress_bar: line_every_n_steps and line_every_s are both null; set one of them "
                "(how often a plain progress line is written where stdout is not a terminal)"
            )
        super().__init__(refresh_rate=refresh_rate, console_kwargs=console_kwargs)  # type: ignore[arg-type]
        self.console_kwargs = dict(console_kwargs or {})
        self.line_every_n_steps = line_every_n_steps
        self.line_every_s = line_every_s
        self.plain_lines = False  # decided in setup: stdout is not a terminal
        self._next_update = 0.0  # monotonic time of the next redraw or line
        self._shown: dict[str, str] = {}  # what the bar shows beside the steps
        self._pace: Pace | None = None  # from this attempt's first step on

    # --- which of the two ------------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # disables the bar on every process but rank zero
        reconfigure(**self.console_kwargs)
        console = get_console()
        self.plain_lines = not (console.is_terminal or console.is_jupyter)

    @property
    def is_enabled(self) -> bool:
        """Whether the live bar runs (Lightning's hooks check this): not where lines are written."""
        return super().is_enabled and not self.plain_lines

    @property
    def writes_lines(self) -> bool:
        return super().is_enabled and self.plain_lines

    # --- the live bar ------------------------------------------------------------------------------

    def configure_columns(self, trainer: L.Trainer) -> list:
        return [
            TextColumn("[progress.description]{task.description}"),
            CustomBarColumn(
                complete_style=self.theme.progress_bar,
                finished_style=self.theme.progress_bar_finished,
                pulse_style=self.theme.progress_bar_pulse,
            ),
            StepsColumn(),
            RateAndTimeColumn(),
        ]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pace = None
        self._next_update = 0.0
        if self.is_disabled:
            return
        start_rich_progress(self, trainer)
        assert self.progress is not None
        total = trainer.max_steps if trainer.max_steps > 0 else float("inf")
        self.train_progress_bar_id = self.progress.add_task(
            self._epoch_text(trainer), total=total, completed=trainer.global_step, steps=True
        )
        self.refresh()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # One bar for the whole run: only the epoch beside it changes.
        if self.is_enabled and self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, description=self._epoch_text(trainer))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not (self.is_enabled or self.writes_lines):
            return
        now = time.monotonic()
        if self._pace is None:
            self._pace = Pace(trainer.global_step, now)
        else:
            self._pace.images += batch_images(batch) * trainer.world_size
        last_step = trainer.global_step == trainer.max_steps
        if self.writes_lines:
            every_n = self.line_every_n_steps
            if last_step or now >= self._next_update or (every_n and trainer.global_step % every_n == 0):
                self._write_line(trainer, outputs, now)
                self._next_update = now + self.line_every_s if self.line_every_s else float("inf")
        elif now >= self._next_update or last_step:
            self._shown.update(loss=number(loss_value(outputs), ".4f"), lr=number(learning_rate(trainer), ".4g"))
            assert self.progress is not None and self.train_progress_bar_id is not None
            self.progress.update(self.train_progress_bar_id, completed=trainer.global_step)
            show_rich_metrics(self, trainer, pl_module)
            self.refresh()
            self._next_update = now + 1 / self.refresh_rate

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, str]:
        """What the bar shows after the time: the latest loss and lr, and the last validation's."""
        return dict(self._shown)

    def _epoch_text(self, trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch}"

    # --- validation: the bar shows its error, lines get one of their own ----------------------------

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pace is not None:
            self._pace.pause()
        super().on_validation_start(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pace is not None:
            self._pace.resume()
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            # Read once per validation; computing them synchronised the processes already.
            metrics = trainer.callback_metrics
            shown = {key: number(float(metrics[key]), spec) for key, spec in VALIDATION_SHOWN.items() if key in metrics}
            self._shown.update(shown)
            if self.writes_lines and shown:
                figures = "  ".join(f"{key} {value}" for key, value in shown.items())
                log.info("validation at step %d (epoch %d): %s", trainer.global_step, trainer.current_epoch, figures)
        super().on_validation_end(trainer, pl_module)

    # --- plain lines -------------------------------------------------------------------------------

    def _write_line(self, trainer: L.Trainer, outputs: Any, now: float) -> None:
        assert self._pace is not None
        step, max_steps = trainer.global_step, trainer.max_steps
        parts = [
            f"step {step}/{max_steps if max_steps > 0 else '?'}",
            f"epoch {trainer.current_epoch}",
            f"loss {number(loss_value(outputs), '.4f')}",
            f"lr {number(learning_rate(trainer), '.4g')}",
            f"{number(self._pace.images_per_second(now), ',.0f')} images/s",
            f"{duration(self._pace.elapsed(now))} elapsed",
            f"{duration(self._pace.seconds_left(step, max_steps, now))} left",
        ]
        log.info("  ".join(parts))


class Pace:
    """Steps and images of this attempt since its first step, timed without validation: the
    figures of a plain line. The clock starts once the first step is done, so that set-up and
    compiling do not count.

    images/s is over the stretch since the previous line; the time left is the remaining steps at
    this attempt's average step rate, validation pauses included (they recur until the end).
    """

    def __init__(self, step: int, now: float) -> None:
        self.first_step, self.started = step, now
        self.images = 0
        self._window_started, self._window_images = now, 0
        self._paused_at: float | None = None
        self._paused_in_window = 0.0

    def pause(self) -> None:
        self._paused_at = time.monotonic()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._paused_in_window += time.monotonic() - self._paused_at
            self._paused_at = None

    def elapsed(self, now: float) -> float:
        return now - self.started

    def images_per_second(self, now: float) -> float | None:
        """Training images per second since the previous call (validation excluded)."""
        seconds = now - self._window_started - self._paused_in_window
        images = self.images - self._window_images
        self._window_started, self._window_images, self._paused_in_window = now, self.images, 0.0
        return images / seconds if seconds > 0 and images > 0 else None

    def seconds_left(self, step: int, max_steps: int, now: float) -> float | None:
        done = step - self.first_step
        if max_steps <= 0 or done <= 0:
            return None
        return (max_steps - step) * self.elapsed(now) / done


def number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def loss_value(outputs: Any) -> float | None:
    """The step's training loss as a number: one read from the device, made only when shown."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    return None if loss is None else float(loss)


def learning_rate(trainer: L.Trainer) -> float | None:
    if not trainer.optimizers:
        return None
    return float(trainer.optimizers[0].param_groups[0]["lr"])
