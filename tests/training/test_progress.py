"""Progress in optimizer steps: a live bar on a terminal, plain lines on a pipe, and cheap per step."""

from __future__ import annotations

import io
import logging
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from commands import assert_ok, command_environment, describe
from resnet_cifar.cli import usage_error_in
from resnet_cifar.errors import ConfigError
from resnet_cifar.training.progress import StepProgressBar
from tiny_runs import TINY_SYNTHETIC_RUN, run_training

STEPS = 6
# One progress line: step/max_steps, epoch, loss, lr, images/s, elapsed, left.
LINE = re.compile(
    r"step (\d+)/(\d+)  epoch (\d+)  loss (\d+\.\d{4})  lr ([\d.e-]+)  ([\d,]+|-) images/s  "
    r"(\d+:\d\d:\d\d) elapsed  (\d+:\d\d:\d\d|-:--:--) left"
)
# Rich's decision that stdout is a terminal also follows these; the tests choose for themselves.
TERMINAL_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR")


class CountingLoss:
    """A stand-in for the loss tensor that counts how often it is read (a device sync on a GPU)."""

    def __init__(self) -> None:
        self.reads = 0

    def __float__(self) -> float:
        self.reads += 1
        return 1.25


def fake_trainer(bar: StepProgressBar, max_steps: int) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=0,
        max_steps=max_steps,
        current_epoch=0,
        world_size=1,
        is_global_zero=True,
        optimizers=[SimpleNamespace(param_groups=[{"lr": 0.1}])],
        state=SimpleNamespace(fn="fit"),
        sanity_checking=False,
        training=True,
        progress_bar_callback=bar,
        callback_metrics={},
    )


def run_steps(bar: StepProgressBar, trainer: SimpleNamespace, loss: CountingLoss) -> None:
    batch = (torch.zeros(4, 1), torch.zeros(4))
    bar.on_train_start(trainer, None)
    for step in range(1, trainer.max_steps + 1):
        trainer.global_step = step
        bar.on_train_batch_end(trainer, None, {"loss": loss}, batch, step - 1)


# --- unit level: both paths, with the terminal decided by a forced console -----------------------


def test_plain_lines_every_n_steps_read_the_loss_only_for_a_line(caplog: pytest.LogCaptureFixture) -> None:
    bar = StepProgressBar(
        line_every_n_steps=100, line_every_s=None, console_kwargs={"file": io.StringIO(), "force_terminal": False}
    )
    trainer = fake_trainer(bar, max_steps=1000)
    bar.setup(trainer, None, "fit")
    assert bar.plain_lines and not bar.is_enabled
    loss = CountingLoss()
    with caplog.at_level(logging.INFO, logger="resnet_cifar.training.progress"):
        run_steps(bar, trainer, loss)
    steps = [int(LINE.search(record.getMessage()).group(1)) for record in caplog.records]
    assert steps == [1, *range(100, 1001, 100)]
    assert loss.reads == len(steps), "the loss is read from the device for a line only, never every step"
    last = LINE.search(caplog.records[-1].getMessage())
    assert last.group(2) == "1000" and last.group(5) == "0.1" and last.group(8) == "0:00:00"


def test_plain_lines_every_s_seconds(caplog: pytest.LogCaptureFixture) -> None:
    bar = StepProgressBar(
        line_every_n_steps=None, line_every_s=3600, console_kwargs={"file": io.StringIO(), "force_terminal": False}
    )
    trainer = fake_trainer(bar, max_steps=500)
    bar.setup(trainer, None, "fit")
    loss = CountingLoss()
    with caplog.at_level(logging.INFO, logger="resnet_cifar.training.progress"):
        run_steps(bar, trainer, loss)
    # The first step (training has started), then not for an hour, and the last step.
    assert [int(LINE.search(r.getMessage()).group(1)) for r in caplog.records] == [1, 500]
    assert loss.reads == 2


def test_terminal_bar_counts_run_steps_at_a_bounded_rate() -> None:
    screen = io.StringIO()
    bar = StepProgressBar(refresh_rate=2, console_kwargs={"file": screen, "force_terminal": True, "width": 160})
    trainer = fake_trainer(bar, max_steps=2000)
    bar.setup(trainer, None, "fit")
    assert bar.is_enabled and not bar.writes_lines
    loss = CountingLoss()
    started = time.monotonic()
    run_steps(bar, trainer, loss)
    seconds = time.monotonic() - started
    bar.teardown(trainer, None, "fit")
    text = screen.getvalue()
    assert "\x1b[" in text  # a live bar: control characters
    assert "step 2000/2000" in text and "epoch 0" in text and "steps/s" in text and "left" in text
    assert "loss: 1.2500" in text and "lr: 0.1" in text
    # At most 2 updates a second (plus the first and the last step), not one per step.
    assert 2 <= loss.reads <= 2 + 2 * seconds + 1 and loss.reads < 100


def test_only_rank_zero_shows_progress() -> None:
    bar = StepProgressBar(line_every_n_steps=1, console_kwargs={"file": io.StringIO(), "force_terminal": False})
    trainer = fake_trainer(bar, max_steps=10)
    trainer.is_global_zero = False
    bar.setup(trainer, None, "fit")
    loss = CountingLoss()
    run_steps(bar, trainer, loss)
    assert not bar.writes_lines and not bar.is_enabled and loss.reads == 0


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"line_every_n_steps": None, "line_every_s": None}, "both null"),
        ({"line_every_n_steps": 0}, "line_every_n_steps=0"),
        ({"refresh_rate": 0}, "refresh_rate=0"),
    ],
)
def test_settings_that_would_show_nothing_are_refused(settings: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        StepProgressBar(**settings)


# --- end to end: a training run on a pipe and on a terminal (pty) --------------------------------


def train_command(run_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        *TINY_SYNTHETIC_RUN,
        f"trainer.max_steps={STEPS}",
        *overrides,
        f"hydra.run.dir={run_dir}",
    ]


def environment(**extra: str) -> dict[str, str]:
    env = command_environment(**extra)
    for name in TERMINAL_VARIABLES:
        env.pop(name, None)
    return env


def test_on_a_pipe_plain_lines_and_no_control_characters(tmp_path: Path) -> None:
    completed = subprocess.run(
        train_command(
            tmp_path / "run",
            "~callbacks.input_preview",
            "callbacks.progress_bar.line_every_n_steps=2",
            "callbacks.progress_bar.line_every_s=null",
        ),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    completed.output = completed.stdout + completed.stderr
    assert_ok(completed)
    lines = [LINE.search(line) for line in completed.stdout.splitlines() if LINE.search(line)]
    assert [int(line.group(1)) for line in lines] == [1, 2, 4, 6], describe(completed)
    assert all(line.group(2) == str(STEPS) for line in lines)
    assert lines[-1].group(6) != "-" and lines[-1].group(8) == "0:00:00", describe(completed)
    # 250 training images in batches of 32: one validation after the epoch's 8 steps... and one
    # after the last step (step 6 here, mid-epoch).
    assert re.search(r"validation at step 6 \(epoch 0\): val/err \d+\.\d\d  val/loss \d+\.\d{4}", completed.stdout), (
        describe(completed)
    )
    assert "\x1b[" not in completed.output and "Epoch 0/-2" not in completed.output


def test_on_a_terminal_the_live_bar_in_steps(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        train_command(tmp_path / "run", "~callbacks.input_preview"),
        cwd=tmp_path,
        env=environment(COLUMNS="160", LINES="40", TERM="xterm-256color"),
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(timeout=300) == 0
    screen = b"".join(chunks).decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert f"step {STEPS}/{STEPS}" in plain and "steps/s" in plain and "elapsed" in plain and "left" in plain, plain[
        -3000:
    ]
    assert re.search(r"epoch 0 .*step \d/6", plain) and "loss: " in plain, plain[-3000:]
    assert not LINE.search(plain), "a terminal gets the live bar, not the plain lines"
    assert "Epoch 0/-2" not in plain


def test_a_setting_that_shows_nothing_is_refused(tmp_path: Path) -> None:
    never = ("callbacks.progress_bar.line_every_n_steps=null", "callbacks.progress_bar.line_every_s=null")
    with pytest.raises(Exception) as raised:
        run_training(tmp_path / "run", *TINY_SYNTHETIC_RUN, *never)
    assert str(usage_error_in(raised.value)) == (
        "callbacks.progress_bar: line_every_n_steps and line_every_s are both null; set one of them "
        "(how often a plain progress line is written where stdout is not a terminal)"
    )
    assert not (tmp_path / "run" / "metrics.json").exists()
