"""Tiny training runs in the test's process: their settings, the Python API that trains them,
and what they log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnet_cifar.train import compose_config, train

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
