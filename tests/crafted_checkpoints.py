"""Checkpoints that a stranger could send: a real checkpoint's contents with code the user did not
choose planted at one config key, and the files that such code would create, truncate, overwrite
or unpickle."""

from __future__ import annotations

import copy
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import torch

# Every key of a checkpoint's configs that something is built from: the run config's (evaluate
# builds the data module, the module with its network, the trainer with its plugins; callbacks and
# loggers are the run's) and the module's hyper-parameters (load_from_checkpoint, the optimizer
# and the scheduler of configure_optimizers).
KEYS = (
    "model",
    "module",
    "module.net",
    "data",
    "trainer",
    "trainer.plugins[0]",
    "callbacks.model_checkpoint",
    "logger.tensorboard",
    "optimizer",
    "module.optimizer",
    "scheduler",
    "module.scheduler",
    "hyper_parameters.net",
    "hyper_parameters.optimizer",
    "hyper_parameters.scheduler",
)
HPARAM_KEYS = tuple(key for key in KEYS if key.startswith("hyper_parameters."))
PAYLOADS = ("creates", "truncates", "overwrites", "unpickles")


class RunsOnUnpickling:
    """Unpickling this creates ``marker``: what a side file of a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def victims(folder: Path) -> Path:
    """``folder`` with the files a payload would touch: notes.txt (to truncate or overwrite),
    other.txt (copied over it) and side.pt (a pickle that creates unpickled.txt when loaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("a user's notes\n")
    (folder / "other.txt").write_text("someone else's text\n")
    torch.save(RunsOnUnpickling(folder / "unpickled.txt"), folder / "side.pt")
    return folder


def payload(kind: str, folder: Path) -> dict[str, Any]:
    """A config node that, built, would do ``kind`` to a file in ``folder``."""
    return {
        "creates": {"_target_": "builtins.open", "file": str(folder / "created.txt"), "mode": "w"},
        "truncates": {"_target_": "builtins.open", "file": str(folder / "notes.txt"), "mode": "w"},
        "overwrites": {
            "_target_": "shutil.copyfile",
            "src": str(folder / "other.txt"),
            "dst": str(folder / "notes.txt"),
        },
        "unpickles": {"_target_": "torch.load", "f": str(folder / "side.pt"), "weights_only": False},
    }[kind]


def plant(checkpoint: dict[str, Any], key: str, node: Any) -> dict[str, Any]:
    """A copy of ``checkpoint`` with ``node`` at ``key``: a key of the run config
    (``trainer.plugins[0]``), or ``hyper_parameters.<name>``."""
    crafted = copy.deepcopy(checkpoint)
    if key.startswith("hyper_parameters."):
        parent, parts = crafted["hyper_parameters"], [key.removeprefix("hyper_parameters.")]
    else:
        parent = crafted["hyper_parameters"]["run_config"]
        parts = [int(part) if part.isdigit() else part for part in re.split(r"\.|\[(\d+)\]", key) if part]
    for part in parts[:-1]:
        parent = parent[part]
    parent[parts[-1]] = node
    return crafted


def write_crafted(source: Path, destination: Path, key: str, node: Any) -> Path:
    """``source``'s checkpoint with ``node`` planted at ``key``, saved to ``destination``."""
    torch.save(plant(torch.load(source, weights_only=True), key, node), destination)
    return destination


def files_of(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder``."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def users_network_module(folder: Path, name: str, monkeypatch: Any, imports: str = "") -> Path:
    """A user's own module ``name`` in ``folder``, importable in this process, whose ``wide``
    builds the paper's network through their code; ``imports`` go at its top."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(
        f"{imports}from resnet_cifar.models import cifar_resnet\n\n\n"
        "def wide(depth, shortcut, residual, num_classes):\n"
        "    return cifar_resnet(depth, shortcut, residual, num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, name, raising=False)  # another test's, imported before
    return folder
