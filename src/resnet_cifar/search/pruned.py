"""A trial stopped by the search's pruner: the exception that ends its run, and the file that
tells so in its folder (``pruned.json``; the run has no metrics.json, as it did not finish).

Nothing here imports Optuna: the train command and the report use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_cifar.files import write_json_atomically
from resnet_cifar.received_files import UnreadableFile, read_json

PRUNED_FILE = "pruned.json"


class RunPruned(Exception):
    """The search's pruner stopped this trial at a validation; its folder has ``pruned.json``."""


def write_pruned(run_dir: str | Path, record: dict[str, Any]) -> None:
    write_json_atomically(Path(run_dir) / PRUNED_FILE, record)


def read_pruned(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's pruned.json, or None when the search did not prune it (or the file is unreadable)."""
    try:
        record = read_json(Path(run_dir) / PRUNED_FILE)
    except UnreadableFile:
        return None
    return record if isinstance(record, dict) else None


def describe_pruned(record: dict[str, Any]) -> str:
    """``pruned by the search at step 400 (val/err 61.20, trial 3 of study lr_wd)``."""
    value = record.get("value")
    shown = f"{value:.2f}" if isinstance(value, (int, float)) else value
    return (
        f"pruned by the search at step {record.get('step')} ({record.get('monitor')} {shown}, "
        f"trial {record.get('trial')} of study {record.get('study_name')})"
    )


def raise_if_pruned(run_dir: str | Path) -> None:
    """Raise :class:`RunPruned` if the run in ``run_dir`` was pruned (its processes said so)."""
    record = read_pruned(run_dir)
    if record is not None:
        raise RunPruned(describe_pruned(record))
