"""Reading what finished runs wrote: metrics.json, TensorBoard events, report.md's table."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def logged_input_grids(run_dir: Path) -> list[Any]:
    """The input grids (PIL images) that a run's LogInputsOnce wrote to its TensorBoard events."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return [Image.open(io.BytesIO(event.encoded_image_string)) for event in events.Images("inputs/augmented_batch")]


def summaries(run_dir: Path, tag: str) -> list[Any]:
    """Every summary value tagged ``tag`` in all of the run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    values = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            values += [value for value in event.summary.value if value.tag == tag]
    return values


def report_row(report: str, variant: str, depth: int) -> list[str]:
    """The cells of report.md's table row for ``variant`` and ``depth`` (exactly one)."""
    rows = [line for line in report.splitlines() if line.startswith(f"| {variant} | {depth} |")]
    assert len(rows) == 1, report
    return [cell.strip() for cell in rows[0].strip("|").split("|")]
