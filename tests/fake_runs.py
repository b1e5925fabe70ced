"""Finished runs as the report reads them, written by hand: a run's config, its metrics.json and
the environment it records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAPERS_NETWORK = "{_target_: resnet_cifar.models.cifar_resnet, depth: %d, shortcut: A, residual: true, num_classes: 10}"
CONFIG = """\
seed: {seed}
model: {model}
data:
  dataset: {dataset}
  batch_size: 128
  val_size: 5000
  padding: 4
optimizer: {{lr: 0.1, momentum: 0.9, weight_decay: 0.0001}}
scheduler: {{milestones: [32000, 48000], gamma: 0.1}}
trainer: {{max_steps: 64000, precision: 32-true}}
"""
H100 = {
    "resnet_cifar": "0.1.0",
    "commit": "4612349a1b2c3d4e5f60718293a4b5c6d7e8f901",
    "tree_modified": False,
    "python": "3.11.7",
    "torch": "2.6.0",
    "lightning": "2.6.0",
    "hydra": "1.3.2",
    "cuda": "12.4",
    "cudnn": "9.1.0",
    "device": "NVIDIA H100 80GB HBM3",
    "device_type": "cuda",
    "devices": 1,
    "precision": "bf16-mixed",
    "torch_threads": 16,
    "platform": "Linux-6.8-x86_64",
}


def write_run(
    root: Path,
    name: str,
    depth: int,
    seed: int,
    environment: dict[str, Any] | None,
    dataset: str = "cifar10",
    model: str | None = None,
    choice: str | None = None,
    **metrics: Any,
) -> Path:
    """A finished run of the paper's network of ``depth`` (or of ``model``, a config in YAML's flow
    style, chosen as ``model=<choice>``); ``metrics`` add to or replace its metrics.json's."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    network = model or PAPERS_NETWORK % depth
    (run / ".hydra" / "config.yaml").write_text(CONFIG.format(seed=seed, model=network, dataset=dataset))
    if choice is not None:
        (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      model: {choice}\n")
    recorded = {"test_err": 8.0 + seed / 10, "val_err": 9.0, "train_err": 1.0, "steps": 64000, **metrics}
    if environment is not None:
        recorded["environment"] = environment
    (run / "metrics.json").write_text(json.dumps(recorded))
    return run
