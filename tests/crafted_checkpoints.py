"""Files that a stranger could send, made from a real run: checkpoints with code or foreign paths
planted in them, and a victim folder outside the run whose files such code would create,
truncate, overwrite or unpickle, so that a test can check nothing there changed."""

from __future__ import annotations

import copy
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import torch

PAYLOADS = ("creates", "truncates", "overwrites", "unpickles")


class RunsOnUnpickling:
    """Unpickling this creates ``marker``: what a side file of a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def victims(folder: Path) -> Path:
    """``folder`` with the files a payload would touch: notes.txt (to truncate or overwrite),
    other.txt (copied over it), side.pt (a pickle that creates unpickled.txt when loaded) and a
    subfolder keep/ with a file of its own (for a deletion)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("a user's notes\n")
    (folder / "other.txt").write_text("someone else's text\n")
    (folder / "keep").mkdir(exist_ok=True)
    (folder / "keep" / "work.txt").write_text("work that must not be deleted\n")
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
    """A copy of ``checkpoint`` with ``node`` at the dotted ``key`` of the checkpoint itself
    (``hyper_parameters.net._target_``, ``hyper_parameters.run_config.trainer.plugins[0]``),
    creating the containers on the way."""
    crafted = copy.deepcopy(checkpoint)
    parts = [int(part) if part.isdigit() else part for part in re.split(r"\.|\[(\d+)\]", key) if part]
    parent = crafted
    for part, following in zip(parts[:-1], parts[1:]):
        if isinstance(parent, dict) and part not in parent:
            parent[part] = [] if isinstance(following, int) else {}
        parent = parent[part]
    if isinstance(parent, list) and parts[-1] == len(parent):
        parent.append(node)
    else:
        parent[parts[-1]] = node
    return crafted


def write_crafted(source: Path, destination: Path, key: str, node: Any) -> Path:
    """``source``'s checkpoint with ``node`` planted at ``key``, saved to ``destination``."""
    torch.save(plant(torch.load(source, weights_only=True), key, node), destination)
    return destination


def alias_bomb(levels: int = 30) -> str:
    """A few hundred bytes of YAML whose aliases, expanded, hold 9 * 9**levels strings."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def in_the_layout_before(checkpoint: dict[str, Any], run_config: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` as the previous release wrote it: the whole composed run config in its
    hyper-parameters (``run_config``), no data module arguments and no mean image."""
    older = copy.deepcopy(checkpoint)
    older["hyper_parameters"]["run_config"] = copy.deepcopy(run_config)
    for key in ("datamodule_hyper_parameters", "datamodule_hparams_name", "CIFARDataModule"):
        older.pop(key, None)
    return older


def files_of(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder`` (folders too, as "folder")."""
    return {
        str(path.relative_to(folder)): "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
    }


def users_network_module(folder: Path, name: str, monkeypatch: Any, imports: str = "") -> Path:
    """A user's own module ``name`` in ``folder``, importable in this process, whose ``wide``
    builds the paper's network through their code; ``imports`` go at its top."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(
        f"{imports}from resnet_cifar.models import cifar_resnet\n\n\n"
        "def wide(depth: int, shortcut: str, residual: bool, num_classes: int):\n"
        "    return cifar_resnet(depth, shortcut, residual, num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, name, raising=False)  # another test's, imported before
    return folder
