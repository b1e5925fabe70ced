"""Finding the runs below a folder and reading each one: its config, metrics.json and curves.

Every directory with a ``.hydra/config.yaml`` is a run. A finished run has a complete
``metrics.json``; the others carry the reason they are not in the tables.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_cifar.report.recipes import Recipe, recipe_of
from resnet_cifar.search.pruned import describe_pruned, read_pruned
from resnet_cifar.trusted_targets import load_without_resolvers

CURVE_TAGS = ("train/err", "val/err")


class ReportError(Exception):
    """Nothing to report on; the message says why."""


@dataclass
class Run:
    path: Path
    variant: str = "?"
    depth: int | None = None
    shortcut: str = "A"
    residual: bool = True
    num_classes: int = 10
    seed: Any = None
    recipe: Recipe = ()  # how it was trained unlike the paper (recipes.py)
    metrics: dict[str, Any] | None = None
    problem: str | None = None  # why the run is not in the tables
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    responses: list[float] | None = None  # std of each 3x3 layer's response, in network order
    environment: dict[str, Any] | None = None  # what trained it (metrics.json's environment)

    @property
    def finished(self) -> bool:
        return self.problem is None


def variant_name(residual: bool, shortcut: str) -> str:
    """ "resnet" (option A), "resnet-B" (projections), or "plain" (no shortcuts at all)."""
    if not residual:
        return "plain"
    return "resnet" if shortcut == "A" else f"resnet-{shortcut}"


def find_run_dirs(root: Path) -> list[Path]:
    return sorted(config.parent.parent for config in root.rglob(".hydra/config.yaml"))


def read_config(run: Run) -> None:
    try:
        # Read without running its resolvers: ${oc.env:...} in a run folder from elsewhere would
        # put this machine's environment into the report.
        cfg = load_without_resolvers(run.path / ".hydra" / "config.yaml")
        model = cfg.model
        run.depth = int(model.depth)
        run.shortcut = str(model.get("shortcut", "A"))
        run.residual = bool(model.get("residual", True))
        run.seed = cfg.get("seed")
        try:
            run.num_classes = int(model.num_classes)
        except Exception:  # an interpolation (${data.num_classes}) that does not resolve here
            run.num_classes = int(cfg.data.get("num_classes", 10))
    except Exception as error:
        run.problem = f".hydra/config.yaml cannot be read ({type(error).__name__}: {error})"
        return
    run.variant = variant_name(run.residual, run.shortcut)
    run.recipe = recipe_of(cfg, run.depth)


def read_metrics(run: Run) -> None:
    path = run.path / "metrics.json"
    pruned = read_pruned(run.path)  # a trial that a hyper-parameter search stopped early
    if pruned is not None:
        run.problem = describe_pruned(pruned)
        return
    if not path.is_file():
        run.problem = "no metrics.json: the run failed or has not finished"
        return
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        run.problem = f"metrics.json cannot be parsed ({error}): half-written or corrupt"
        return
    test_err = metrics.get("test_err") if isinstance(metrics, dict) else None
    if isinstance(test_err, bool) or not isinstance(test_err, (int, float)) or not math.isfinite(test_err):
        run.problem = "metrics.json has no finite test_err: the run did not finish"
        return
    run.metrics = metrics
    environment = metrics.get("environment")
    run.environment = environment if isinstance(environment, dict) else None


def read_curves(run: Run) -> None:
    """train/err and val/err against the step, from all of the run's TensorBoard event files.

    A resumed run repeats some steps across its event files; the latest value of a step wins.
    """
    files = sorted(run.path.glob("events.out.tfevents.*"))
    if not files:
        return
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    latest: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
    for path in files:
        try:
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    if value.tag not in CURVE_TAGS:
                        continue
                    if value.HasField("simple_value"):
                        number = float(value.simple_value)
                    elif value.HasField("tensor"):
                        number = float(tensor_util.make_ndarray(value.tensor).item())
                    else:
                        continue
                    previous = latest[value.tag].get(event.step)
                    if previous is None or event.wall_time >= previous[0]:
                        latest[value.tag][event.step] = (event.wall_time, number)
        except Exception:  # a truncated event file (killed run): keep what was read
            continue
    run.curves = {tag: sorted((step, v) for step, (_, v) in points.items()) for tag, points in latest.items()}


def read_run(path: Path) -> Run:
    run = Run(path)
    read_config(run)
    if run.problem is None:
        read_metrics(run)
    if run.depth is not None:
        read_curves(run)
    if run.problem and run.curves:
        last = max(step for points in run.curves.values() for step, _ in points)
        run.problem += f" (last logged step {last})"
    return run


def read_runs(root: Path) -> list[Run]:
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory; pass a sweep or outputs directory that holds runs")
    runs = [read_run(path) for path in find_run_dirs(root)]
    if not runs:
        raise ReportError(
            f"{root} holds no runs (no directory below it has .hydra/config.yaml); "
            "pass the directory of a sweep, e.g. outputs/multirun/<date>"
        )
    return runs


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)
