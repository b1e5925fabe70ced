"""Tiny training runs in the test's process: their settings, the Python API that trains them,
what they log, and the refusals of runs and evaluations that must not start."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from resnet_cifar.errors import UsageError
from resnet_cifar.evaluate import compose_evaluation, evaluate
from resnet_cifar.train import compose_config, train
from run_outputs import read_json

# Short CPU runs: the smallest network (depth 8 = 6n+2 with n=1), small batches, few steps.
TINY_RUN = (
    "experiment=smoke",
    "model.depth=8",
    "data.batch_size=32",
    "data.eval_batch_size=50",
    "data.val_size=50",
    "trainer.log_every_n_steps=2",
)
# On synthetic data (300 training images before the split, 100 test images).
TINY_SYNTHETIC_RUN = (*TINY_RUN, "data.synthetic_sizes=[300,100]")
# On files: add data.root=<image_folder_root> (30 training and 10 test images per class).
TINY_IMAGE_FOLDER_RUN = (*TINY_RUN, "data=cifar10")
# Two steps of the smallest network on synthetic data.
TWO_STEPS = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=2")
# The steps of a tiny synthetic run (tiny_run) unless it says otherwise.
SMOKE_STEPS = 6
# A run that logs to trackers (add logger=...): 4 steps, the learning rate changed on the way.
TRACKED_STEPS = 4
TRACKED_RUN = (
    *TINY_SYNTHETIC_RUN,
    f"trainer.max_steps={TRACKED_STEPS}",
    "scheduler.milestones=[2,3]",
    "~callbacks.progress_bar",
    "~callbacks.input_preview",
)
# The results of metrics.json that every tracker gets too.
TRACKED_RESULTS = ("test_err", "test_err_best_val", "val_err", "train_err")


def run_training(output_dir: Path, *overrides: str) -> dict[str, Any]:
    """Train in this process as ``python -m resnet_cifar.train <overrides>`` would in ``output_dir``
    (the Python API: compose_config, then train); returns metrics.json's values."""
    return train(compose_config(overrides, output_dir=output_dir))


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """The messages logged at INFO and above while the block runs (what a command would print).
    Unlike pytest's ``caplog``, it also serves module-scoped fixtures, which train once for
    several tests."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@dataclass
class Run:
    """A run trained in this process: its directory, what train() returned and what it logged."""

    dir: Path
    returned: dict[str, Any]
    log: str

    @property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.dir / "metrics.json")

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.dir / ".hydra" / "config.yaml").read_text())


def tiny_run(root: Path, name: str, *overrides: str, steps: int = SMOKE_STEPS) -> Run:
    """A tiny synthetic training run in ``root/name``, trained in this process."""
    with captured_log() as log:
        returned = run_training(root / name, *TINY_SYNTHETIC_RUN, f"trainer.max_steps={steps}", *overrides)
    return Run(root / name, returned, "\n".join(log))


def refused(call: Callable[[], Any]) -> str:
    """What the command would print after ``error: `` for the exception that ``call`` raises;
    fails unless it raises a usage error itself, as the Python API documents (the command prints
    it without a traceback)."""
    with pytest.raises(UsageError) as raised:
        call()
    return str(raised.value)


def refusal(tmp_path: Path, *overrides: str, run_dir: Path | None = None) -> str:
    """The message of a two-step run on synthetic data with ``overrides``, trained in ``run_dir``
    (default tmp_path/run) in this process, which must be refused."""
    return refused(lambda: run_training(run_dir or tmp_path / "run", *TWO_STEPS, *overrides))


def evaluation_refusal(checkpoint: Path | str, *overrides: str) -> str:
    """The message of ``evaluate ckpt_path=<checkpoint> <overrides>`` in this process, which must be refused."""
    return refused(lambda: evaluate(compose_evaluation([f"ckpt_path={checkpoint}", *overrides])))
