"""What the runs of a report were trained with (metrics.json's ``environment``), and where a
table row averages runs of different software, devices or code.

Runs of one recipe are averaged whatever machine trained them, but a row that mixes torch
versions, GPUs or commits says so: its spread may come from them rather than from the seeds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from resnet_cifar.provenance import commit_label

Environment = dict[str, Any]
# (metrics.json's key, the report's name): a row whose runs differ in any of these is mixed.
COMPARED = (
    ("resnet_cifar", "resnet-cifar"),
    ("commit", "commit"),
    ("python", "Python"),
    ("torch", "torch"),
    ("lightning", "Lightning"),
    ("hydra", "Hydra"),
    ("cuda", "CUDA"),
    ("cudnn", "cuDNN"),
    ("device", "device"),
    ("devices", "devices"),
)
# Listed in the report's environment but not compared: precision makes a recipe of its own
# (recipes.py), the platform and threads change speed, not what is computed, and the CUDA that
# torch was built with computes nothing on the CPU (on a GPU it is the `cuda` compared above).
LISTED = (
    *COMPARED,
    ("torch_built_with_cuda", "torch built with CUDA"),
    ("precision", "precision"),
    ("torch_threads", "torch threads"),
    ("platform", "platform"),
)
# Runs recorded before `torch_built_with_cuda` existed have torch's build under `cuda` and
# `cudnn`, on the CPU too: what ran on their device is read from their device type.
DEVICE_LIBRARIES = ("cuda", "cudnn")


def cell(text: str) -> str:
    """Text from a run's files as one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def value(environment: Environment, key: str) -> str:
    if key == "commit":
        return commit_label(environment)
    if key in DEVICE_LIBRARIES and environment.get("device_type") not in (None, "cuda"):
        return "none"
    if key == "torch_built_with_cuda" and key not in environment:
        key = "cuda"
    found = environment.get(key)
    return "none" if found is None else str(found)


def counted(values: Sequence[str]) -> str:
    """``2.6.0`` for one value; ``2.5.1 (2 runs), 2.6.0 (1 run)`` for several."""
    counts = sorted(Counter(values).items())
    if len(counts) == 1:
        return counts[0][0]
    return ", ".join(f"{text} ({n} run{'s' if n > 1 else ''})" for text, n in counts)


def mixed(environments: Sequence[Environment | None]) -> str | None:
    """``mixed: torch 2.5.1 (1 run), 2.6.0 (2 runs); commit ...`` where the runs differ, else None.
    Runs that record no environment (older runs) make a row mixed with those that do."""
    recorded = [environment for environment in environments if isinstance(environment, dict)]
    if not recorded:
        return None
    parts = []
    if len(recorded) < len(environments):
        parts.append(f"environment not recorded for {len(environments) - len(recorded)} of {len(environments)} runs")
    for key, name in COMPARED:
        values = [value(environment, key) for environment in recorded]
        if len(set(values)) > 1:
            parts.append(f"{name} {counted(values)}")
    return "mixed: " + "; ".join(parts) if parts else None


def row_cell(environments: Sequence[Environment | None]) -> str:
    """A table row's environment cell: what is mixed, else ``same``, or ``not recorded``."""
    if not any(isinstance(environment, dict) for environment in environments):
        return "not recorded"
    return cell(mixed(environments) or "same")


def environment_section(environments: Sequence[Environment | None]) -> list[str]:
    """report.md's "Environment": each key with its value, or its values and how many runs had each."""
    recorded = [environment for environment in environments if isinstance(environment, dict)]
    lines = ["## Environment", ""]
    if not recorded:
        return [*lines, "The runs do not record their environment (written by a resnet-cifar without it).", ""]
    lines.append("The software, device and code the finished runs were trained with (`environment` in `metrics.json`).")
    if len(recorded) < len(environments):
        lines.append(f"Not recorded by {len(environments) - len(recorded)} of {len(environments)} runs.")
    lines += ["", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {cell(counted([value(e, key) for e in recorded]))} |" for key, name in LISTED]
    return [*lines, ""]
