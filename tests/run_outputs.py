"""Reading what finished runs wrote: metrics.json, TensorBoard events, report.md's table, a
sweep's jobs; and comparing what a tracker shows with TensorBoard's."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


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


def tensorboard_hparams(job: Path) -> dict[str, Any]:
    """The hyper-parameters of a job's TensorBoard HPARAMS tab, as numbers or text."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    (start,) = summaries(job, "_hparams_/session_start_info")
    hparams = HParamsPluginData.FromString(start.metadata.plugin_data.content).session_start_info.hparams
    return {
        key: value.number_value if value.HasField("number_value") else value.string_value
        for key, value in hparams.items()
    }


def tensorboard_curve(job: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(job))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def same_curve(logged: list[tuple[int, float]], shown: list[tuple[int, float]]) -> bool:
    """The same steps and values (TensorBoard keeps 32-bit floats)."""
    return [step for step, _ in logged] == [step for step, _ in shown] and [
        value for _, value in logged
    ] == pytest.approx([value for _, value in shown], rel=1e-6)


def same_values(logged: dict[str, str], shown: dict[str, Any]) -> bool:
    """A tracker's values (as text) are TensorBoard's (numbers or text)."""
    return logged.keys() == shown.keys() and all(
        float(logged[key]) == value if isinstance(value, float) else logged[key] == value
        for key, value in shown.items()
    )


@dataclass
class Sweep:
    """A sweep's folder and the working directory it was started from."""

    dir: Path
    cwd: Path

    @property
    def jobs(self) -> list[Path]:
        return sorted(metrics.parent for metrics in self.dir.glob("*/metrics.json"))

    @property
    def store(self) -> str:
        """The default MLflow store: outputs/mlflow.db in the working directory."""
        return f"sqlite:///{self.cwd}/outputs/mlflow.db"
