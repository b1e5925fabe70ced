"""Finding the runs below a folder and reading each one: its config, metrics.json and curves.

Every directory with a ``.hydra/config.yaml`` is a run. A finished run has a complete
``metrics.json``; the others carry the reason they are not in the tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_cifar.errors import UsageError
from resnet_cifar.received_files import UnreadableFile, read_json, read_yaml, walk_folder
from resnet_cifar.report.networks import Network, network_of
from resnet_cifar.report.recipes import NOT_RECORDED, Recipe, lookup, recipe_of
from resnet_cifar.search.pruned import describe_pruned, read_pruned
from resnet_cifar.typed_settings import resolve_references, shown

CURVE_TAGS = ("train/err", "val/err")


class ReportError(UsageError):
    """Nothing to report on; the message says why."""


@dataclass
class Run:
    path: Path
    network: Network = Network(None)
    seed: Any = None
    dataset: str = "?"  # data.dataset, which the figures name
    recipe: Recipe = ()  # how it was trained unlike the paper (recipes.py)
    metrics: dict[str, Any] | None = None
    problem: str | None = None  # why the run is not in the tables
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    responses: list[float] | None = None  # std of each 3x3 layer's response, in network order
    environment: dict[str, Any] | None = None  # what trained it (metrics.json's environment)

    @property
    def finished(self) -> bool:
        return self.problem is None


def find_run_dirs(root: Path) -> list[Path]:
    """The folders below ``root`` with a ``.hydra/config.yaml``; no linked folder is entered."""
    return sorted(
        folder
        for folder, folders, _ in walk_folder(root)
        if ".hydra" in folders and not (folder / ".hydra").is_symlink() and (folder / ".hydra" / "config.yaml").exists()
    )


def typed(config: dict[str, Any], key: str, kind: type, default: Any = NOT_RECORDED) -> Any:
    """The value at ``key`` of a run's config if it is a ``kind`` (a bool is no int), ``default``
    where it is not recorded and a default is given; else UnreadableFile."""
    value = lookup(config, key)
    if value is NOT_RECORDED and default is not NOT_RECORDED:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        found = "not recorded" if value is NOT_RECORDED else f"{shown(value)}, not {kind.__name__}"
        raise UnreadableFile(f"{key} is {found}")
    return value


def read_config(run: Run) -> dict[str, Any] | None:
    """Read the run's .hydra/config.yaml as data (bounded, no aliases, no resolver run: a value
    that would call one reads as not recorded, so nothing of this machine reaches the report)."""
    try:
        config = resolve_references(read_yaml(run.path / ".hydra" / "config.yaml"), unresolved=NOT_RECORDED)
        if not isinstance(config, dict):
            raise UnreadableFile("it is not a mapping")
        typed(config, "model._target_", str)
        model = {key: None if value is NOT_RECORDED else value for key, value in config["model"].items()}
        run.network = network_of(model, model_choice(run.path))
        if run.network.papers:  # the report's tables and figures place the paper's networks by depth
            typed(config, "model.depth", int)
        seed = lookup(config, "seed")
        run.seed = seed if isinstance(seed, (int, str)) and not isinstance(seed, bool) else None
        run.dataset = typed(config, "data.dataset", str, default="?")
    except UnreadableFile as error:
        run.problem = f".hydra/config.yaml cannot be read ({error})"
        return None
    run.recipe = recipe_of(config, run.network.depth)
    return config


def model_choice(run_path: Path) -> str | None:
    """The model config the run chose (``model=wide``), from its .hydra/hydra.yaml, if recorded."""
    try:
        choice = read_yaml(run_path / ".hydra" / "hydra.yaml")["hydra"]["runtime"]["choices"]["model"]
    except (UnreadableFile, KeyError, TypeError):
        return None
    return choice if isinstance(choice, str) else None


def read_metrics(run: Run) -> None:
    path = run.path / "metrics.json"
    pruned = read_pruned(run.path)  # a trial that a hyper-parameter search stopped early
    if pruned is not None:
        run.problem = describe_pruned(pruned)
        return
    if not path.exists() and not path.is_symlink():
        run.problem = "no metrics.json: the run failed or has not finished"
        return
    try:
        metrics = read_json(path)
    except UnreadableFile as error:
        run.problem = f"metrics.json cannot be read ({error})"
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
    files = sorted(path for path in run.path.glob("events.out.tfevents.*") if not path.is_symlink())
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
    if run.network.target is not None:
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


def read_only_data(data: dict[str, Any], run_path: Path) -> dict[str, Any]:
    """A run's recorded data settings for reading its data again: nothing downloaded or cached
    into its data folder, and a relative data folder taken from where the run was started."""
    data = {**data, "download": False, "cache": False}
    root = Path(str(data.get("root", "data")))
    if data.get("dataset") != "synthetic" and not root.is_absolute() and not root.exists():
        try:
            hydra = read_yaml(run_path / ".hydra" / "hydra.yaml")
            data["root"] = str(Path(str(hydra["hydra"]["runtime"]["cwd"])) / root)
        except (UnreadableFile, KeyError, TypeError):
            pass
    return data


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)
