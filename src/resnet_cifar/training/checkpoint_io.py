"""How a run writes and reads its checkpoints: whole files only, and restored state kept inside the run.

Writing goes to a temporary file beside the target, renamed over it: a process killed during the
write (or a full disk) leaves the previous checkpoint whole, and a symbolic link at the target is
replaced, not written through. (Lightning's own writer stages the file in the system's temporary
folder, often on another file system, where the final move is a copy that can be cut short.)

Reading (a resume, ``trainer.test(ckpt_path=...)``) loads tensors and plain containers only
(:func:`~resnet_cifar.training.checkpoints.read_checkpoint`). Lightning then restores the
callbacks' and loops' state from the file and acts on the paths in it: ModelCheckpoint deletes the
checkpoints it no longer keeps and names the best one, which the run tests. Every such path must
be a plain local path inside this run's checkpoint folder; any other is dropped, with a warning,
before Lightning sees it (with the whole state of the callback that named it, which starts afresh),
and nothing outside that folder is ever removed. (Paths in the folder the
checkpoint was saved in count as this folder's when the checkpoint is read from this folder: a run
folder copied elsewhere resumes as it was.) So a resume never
deletes, downloads or reads anything outside its run, whoever wrote the checkpoint.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from resnet_cifar.files import atomic_write
from resnet_cifar.training.checkpoints import checkpoint_contents, read_checkpoint
from resnet_cifar.typed_settings import shown

log = logging.getLogger(__name__)
# State that names files: ModelCheckpoint's best_model_path, kth_best_model_path, last_model_path,
# dirpath, and the keys of its best_k_models ({path: score}).
PATH_KEY = re.compile(r"(path|dir)$")
PATH_KEYED = ("best_k_models",)
RESTORED_STATE = ("callbacks", "loops")


def inside(path: Any, folder: Path) -> bool:
    """Whether ``path`` is a plain local path that resolves (links followed) inside ``folder``."""
    if not isinstance(path, (str, Path)) or "://" in str(path) or "\0" in str(path):
        return False
    resolved = Path(path).resolve()
    return resolved == folder or folder in resolved.parents


def relocated(path: Any, recorded_folder: Any, folder: Path) -> Any:
    """``path`` moved into ``folder`` where it names ``recorded_folder`` or a file directly in it
    (the checkpoint folder the state was saved in: a run folder copied or moved since); other
    paths as they are. Only a file name is kept, so the result never leaves ``folder``."""
    if not isinstance(path, str) or not isinstance(recorded_folder, str) or "://" in path or "://" in recorded_folder:
        return path
    recorded = os.path.normpath(recorded_folder)
    if os.path.normpath(path) == recorded:
        return str(folder)
    name = os.path.basename(path)
    if os.path.normpath(os.path.dirname(path)) == recorded and name not in ("", ".", ".."):
        return str(folder / name)
    return path


def kept_inside(
    state: Any,
    folder: Path,
    dropped: Callable[[str, Any], None],
    key: str = "",
    recorded_folder: Any = None,
    relocate: bool = True,
) -> Any:
    """``state`` without the paths that lie outside ``folder`` (each dropped one is passed to
    ``dropped``); where ``relocate``, those of the folder it was saved in (its ``dirpath``) are
    moved into ``folder`` first."""
    if isinstance(state, dict):
        recorded_folder = state.get("dirpath", recorded_folder) if relocate else None
        kept = {}
        for name, value in state.items():
            where = f"{key}.{name}" if key else str(name)
            if name in PATH_KEYED and isinstance(value, dict):
                moved = {relocated(path, recorded_folder, folder): score for path, score in value.items()}
                for path in [path for path in moved if not inside(path, folder)]:
                    dropped(f"{where}[...]", path)
                kept[name] = {path: score for path, score in moved.items() if inside(path, folder)}
            elif isinstance(name, str) and PATH_KEY.search(name) and value:
                value = relocated(value, recorded_folder, folder)
                if inside(value, folder):
                    kept[name] = value
                else:
                    dropped(where, value)
                    kept[name] = ""
            else:
                kept[name] = kept_inside(value, folder, dropped, where, recorded_folder, relocate)
        return kept
    if isinstance(state, list):
        return [
            kept_inside(value, folder, dropped, f"{key}[{index}]", recorded_folder, relocate)
            for index, value in enumerate(state)
        ]
    return state


def paths_kept_inside(state: Any, folder: Path, owner: str, relocate: bool) -> tuple[Any, list[str]]:
    """:func:`kept_inside` of ``state``, with the dropped paths as ``<where>=<path>`` lines."""
    dropped: list[str] = []
    kept = kept_inside(
        state, folder, lambda where, value: dropped.append(f"{where}={shown(value, 200)}"), owner, relocate=relocate
    )
    return kept, dropped


class RunCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO for a run whose checkpoints live in ``checkpoint_dir``: atomic
    writes, weights-only reads, restored paths kept inside ``checkpoint_dir`` (module docstring)."""

    def __init__(self, checkpoint_dir: str | Path | None = None) -> None:
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir).resolve()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as temporary:
            torch.save(checkpoint, temporary)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        checkpoint = read_checkpoint(str(path), io.BytesIO(checkpoint_contents(path)))
        if self.checkpoint_dir is None:
            return checkpoint
        # The state of a checkpoint in this folder is this run's, wherever the folder was when it
        # was saved. One from elsewhere (ckpt_path= of another run) names that run's files.
        relocate = Path(path).resolve().parent == self.checkpoint_dir
        dropped: list[str] = []
        for part in RESTORED_STATE:
            for name, state in list((checkpoint.get(part) or {}).items()):
                owner = str(name).split("{")[0]  # ModelCheckpoint{'monitor': ...}: the callback's class
                kept, dropped_here = paths_kept_inside(state, self.checkpoint_dir, owner, relocate)
                dropped += dropped_here
                if dropped_here and part == "callbacks":
                    # A callback's state is one whole: a best score kept without its file would be
                    # compared with every new result. The callback starts afresh instead.
                    del checkpoint[part][name]
                else:
                    checkpoint[part][name] = kept
        if dropped:
            log.warning(
                "checkpoint %s: left out of the restored state, as they lie outside this run's %s: %s "
                "(a callback whose state named one starts afresh)",
                path,
                self.checkpoint_dir,
                "; ".join(dropped),
            )
        return checkpoint

    def remove_checkpoint(self, path: str | Path) -> None:
        if self.checkpoint_dir is not None and not inside(path, self.checkpoint_dir):
            log.warning("not removing %s: it lies outside this run's %s", shown(str(path)), self.checkpoint_dir)
            return
        super().remove_checkpoint(path)
