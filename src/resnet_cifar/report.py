"""The paper's table and figures from a folder of runs.

    python -m resnet_cifar.report DIR

Every directory below DIR with a ``.hydra/config.yaml`` is a run. Finished runs (a complete
``metrics.json``) enter the tables; the others are listed as failed or unfinished. Writes
``DIR/report.md`` with its plots beside it: ``training_curves.png`` (paper Fig. 6),
``error_vs_depth.png`` and ``layer_responses.png`` (Fig. 7, from the final checkpoints).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from resnet_cifar.files import atomic_write
from resnet_cifar.plotting import pyplot

REPORT_FILE = "report.md"
CURVES_FILE = "training_curves.png"
DEPTH_FILE = "error_vs_depth.png"
RESPONSES_FILE = "layer_responses.png"
RESPONSE_IMAGES = 256  # validation images through each final network for Fig. 7
# Paper Table 6: CIFAR-10 test error (%) of the ResNets with option A shortcuts.
PAPER_TEST_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
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
    metrics: dict[str, Any] | None = None
    problem: str | None = None  # why the run is not in the tables
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    responses: list[float] | None = None  # std of each 3x3 layer's response, in network order

    @property
    def finished(self) -> bool:
        return self.problem is None


def variant_name(residual: bool, shortcut: str) -> str:
    """"resnet" (option A), "resnet-B" (projections), or "plain" (no shortcuts at all)."""
    if not residual:
        return "plain"
    return "resnet" if shortcut == "A" else f"resnet-{shortcut}"


def find_run_dirs(root: Path) -> list[Path]:
    return sorted(config.parent.parent for config in root.rglob(".hydra/config.yaml"))


def read_config(run: Run) -> None:
    try:
        cfg = OmegaConf.load(run.path / ".hydra" / "config.yaml")
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


def read_metrics(run: Run) -> None:
    path = run.path / "metrics.json"
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


@lru_cache(maxsize=None)
def parameter_count(depth: int, shortcut: str, residual: bool, num_classes: int) -> int:
    from resnet_cifar.models import cifar_resnet

    net = cifar_resnet(depth=depth, shortcut=shortcut, residual=residual, num_classes=num_classes)
    return sum(p.numel() for p in net.parameters())


@dataclass
class Group:
    variant: str
    depth: int
    shortcut: str
    residual: bool
    num_classes: int
    errors: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.errors)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); None for a single run."""
        return statistics.stdev(self.errors) if len(self.errors) > 1 else None

    @property
    def params(self) -> int:
        return parameter_count(self.depth, self.shortcut, self.residual, self.num_classes)

    @property
    def paper(self) -> float | None:
        return PAPER_TEST_ERR.get(self.depth) if self.variant == "resnet" and self.num_classes == 10 else None


def group_runs(runs: list[Run]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for run in runs:
        if not run.finished:
            continue
        key = (run.variant, run.depth, run.num_classes)
        if key not in groups:
            groups[key] = Group(run.variant, run.depth, run.shortcut, run.residual, run.num_classes, [])
        groups[key].errors.append(float(run.metrics["test_err"]))
    return sorted(groups.values(), key=lambda g: (g.variant != "resnet", g.variant, g.num_classes, g.depth))


def format_params(count: int) -> str:
    return f"{count / 1e6:.2f}M ({count:,})"


def error_table(groups: list[Group], with_paper: bool) -> list[str]:
    header = "| variant | depth | params | n | test err % (mean ± std) | min |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    if with_paper:
        header += " paper |"
        rule += " ---: |"
    lines = [header, rule]
    for g in groups:
        std = "—" if g.std is None else f"{g.std:.2f}"
        row = (
            f"| {g.variant} | {g.depth} | {format_params(g.params)} | {len(g.errors)} "
            f"| {g.mean:.2f} ± {std} | {min(g.errors):.2f} |"
        )
        if with_paper:
            row += f" {g.paper:.2f} |" if g.paper is not None else " — |"
        lines.append(row)
    return lines


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def write_markdown(
    root: Path, runs: list[Run], groups: list[Group], plots: list[str], response_problems: list[str] = ()
) -> Path:
    finished = [run for run in runs if run.finished]
    failed = [run for run in runs if not run.finished]
    residual = [g for g in groups if g.variant != "plain"]
    plain = [g for g in groups if g.variant == "plain"]
    lines = [
        f"# CIFAR ResNets: {root.name or root}",
        "",
        f"{len(runs)} runs: {len(finished)} finished, {len(failed)} failed or unfinished. "
        "Test error is top-1 % of the final weights (the paper's protocol); ± is the sample "
        "standard deviation over seeds (— for a single run). The paper's numbers are He et al. "
        "(2016), Table 6 (ResNets, option A shortcuts).",
        "",
    ]
    if residual:
        lines += ["## ResNets", "", *error_table(residual, with_paper=True), ""]
    if plain:
        lines += ["## Plain nets", "", *error_table(plain, with_paper=False), ""]
    if not groups:
        lines += ["No run has finished yet.", ""]
    if plots:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({name})" for name in plots]
        lines += [""]
    if response_problems:
        lines += ["Layer responses (Fig. 7) not computed for:", ""]
        lines += [f"- {problem}" for problem in response_problems]
        lines += [""]
    if failed:
        lines += ["## Failed or unfinished runs", "", "| run | why |", "| --- | --- |"]
        lines += [f"| {relative(run.path, root)} | {run.problem} |" for run in failed]
        lines += [""]
    path = root / REPORT_FILE
    with atomic_write(path) as temporary:
        temporary.write_text("\n".join(lines))
    return path


def averaged_curve(runs: list[Run], tag: str) -> tuple[list[int], list[float]]:
    """The mean over seeds at every step that all of them logged (else every step logged)."""
    series = [dict(run.curves[tag]) for run in runs if run.curves.get(tag)]
    if not series:
        return [], []
    common = set.intersection(*(set(s) for s in series))
    steps = sorted(common) if len(common) > 1 or len(series) == 1 else sorted(set().union(*series))
    values = [statistics.fmean(s[step] for s in series if step in s) for step in steps]
    return steps, values


def plot_training_curves(root: Path, runs: list[Run]) -> str | None:
    """Paper Fig. 6: per variant one panel, per depth one colour; train err thin, val err bold."""
    plt = pyplot()

    by_variant: dict[str, dict[int, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.depth is not None and run.curves:
            by_variant[run.variant][run.depth].append(run)
    if not by_variant:
        return None
    variants = sorted(by_variant, key=lambda v: (v != "plain", v))  # plain left, as in the paper
    depths = sorted({d for v in by_variant.values() for d in v})
    colours = {d: plt.cm.viridis(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}
    fig, axes = plt.subplots(1, len(variants), figsize=(6 * len(variants), 4.5), sharey=True, squeeze=False)
    for ax, variant in zip(axes[0], variants):
        for depth in sorted(by_variant[variant]):
            group = by_variant[variant][depth]
            name = f"{'plain' if variant == 'plain' else 'ResNet'}-{depth}"
            for tag, width, label in (("train/err", 0.8, None), ("val/err", 2.2, name)):
                steps, values = averaged_curve(group, tag)
                if steps:  # markers where a curve has few points (short runs) and a line shows little
                    marker = "o" if len(steps) < 10 else None
                    ax.plot(steps, values, color=colours[depth], linewidth=width, label=label, marker=marker, markersize=2 * width + 1)
        ax.set_title(variant)
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[0][0].set_ylabel("error (%)   thin: train, bold: val")
    fig.suptitle("Training on CIFAR-10 (mean over seeds)")
    fig.tight_layout()
    fig.savefig(root / CURVES_FILE, dpi=120)
    plt.close(fig)
    return CURVES_FILE


def plot_error_vs_depth(root: Path, groups: list[Group]) -> str | None:
    plt = pyplot()

    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    variants = sorted({g.variant for g in groups}, key=lambda v: (v != "plain", v))
    for variant in variants:
        own = [g for g in groups if g.variant == variant]
        ax.errorbar(
            [g.depth for g in own],
            [g.mean for g in own],
            yerr=[g.std or 0.0 for g in own],
            marker="o",
            capsize=4,
            label=f"{variant} (mean ± std)",
        )
    paper = sorted((g.depth, g.paper) for g in groups if g.paper is not None)
    if paper:
        ax.plot(*zip(*paper), "k--", marker="x", alpha=0.6, label="paper (ResNet)")
    ax.set_xscale("log")
    ticks = sorted({g.depth for g in groups})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("test error (%)")
    ax.set_title("CIFAR-10 test error vs depth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(root / DEPTH_FILE, dpi=120)
    plt.close(fig)
    return DEPTH_FILE


# --- Fig. 7: standard deviations of the layer responses ---


def response_layers(net: Any) -> list[Any]:
    """The BN after every 3x3 convolution, in network order (not the 1x1 projections' BN)."""
    from torch import nn

    return [
        module
        for name, module in net.named_modules()
        if isinstance(module, nn.BatchNorm2d) and "shortcut" not in name.split(".")
    ]


def validation_images(data_config: dict[str, Any], run_path: Path, cache: dict) -> Any:
    """The first RESPONSE_IMAGES validation images of the run's data (test images if it has no
    validation split), normalised as in training. Data modules are cached per data config."""
    from hydra.utils import instantiate

    config = dict(data_config)
    root = Path(str(config.get("root", "data")))
    if config.get("dataset") != "synthetic" and not root.is_absolute() and not root.exists():
        try:  # relative to where the run was started
            cwd = OmegaConf.load(run_path / ".hydra" / "hydra.yaml").hydra.runtime.cwd
            config["root"] = str(Path(cwd) / root)
        except Exception:
            pass
    config["download"] = False
    key = json.dumps(config, sort_keys=True, default=str)
    if key not in cache:
        datamodule = instantiate(config)
        datamodule.setup("validate")
        images = datamodule.val_set.images if len(datamodule.val_set) else datamodule.test_set.images
        cache[key] = datamodule.normalize(images[:RESPONSE_IMAGES].clone())
    return cache[key]


def layer_response_stds(run: Run, data_cache: dict) -> list[float]:
    """Std of each 3x3 layer's output after BN, before the addition and ReLU (paper Fig. 7),
    of the run's final network (checkpoints/last.ckpt) on validation images."""
    import torch

    from resnet_cifar.checkpoints import checkpoint_config, read_checkpoint
    from resnet_cifar.models import cifar_resnet

    path = run.path / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    model = config["model"]
    net = cifar_resnet(model["depth"], model["shortcut"], model["residual"], model["num_classes"])
    weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(weights)
    net.eval()
    images = validation_images(config["data"], run.path, data_cache)
    stds: list[float] = []
    hooks = [
        layer.register_forward_hook(lambda module, inputs, output: stds.append(output.float().std().item()))
        for layer in response_layers(net)
    ]
    try:
        with torch.no_grad():
            net(images)
    finally:
        for hook in hooks:
            hook.remove()
    return stds


def read_responses(root: Path, runs: list[Run]) -> list[str]:
    """Fill ``run.responses`` for finished runs; return why it failed for the others."""
    problems, cache = [], {}
    for run in runs:
        if not run.finished:
            continue
        try:
            run.responses = layer_response_stds(run, cache)
        except Exception as error:  # a missing checkpoint or data root: the rest of the report stands
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            problems.append(f"{relative(run.path, root)}: {reason}")
    return problems


def plot_layer_responses(root: Path, runs: list[Run]) -> str | None:
    """Paper Fig. 7: per layer, and sorted by magnitude; plain dashed, ResNets solid."""
    plt = pyplot()

    groups: dict[tuple[str, int], list[list[float]]] = defaultdict(list)
    for run in runs:
        if run.responses:
            groups[(run.variant, run.depth)].append(run.responses)
    if not groups:
        return None
    depths = sorted({depth for _, depth in groups})
    colours = {d: plt.cm.viridis(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}
    fig, (by_layer, by_size) = plt.subplots(2, 1, figsize=(8, 7))
    for (variant, depth), series in sorted(groups.items(), key=lambda item: (item[0][0] != "plain", item[0])):
        mean = [statistics.fmean(values) for values in zip(*series)]
        style = "--" if variant == "plain" else "-"
        label = f"{'plain' if variant == 'plain' else variant.replace('resnet', 'ResNet')}-{depth}"
        layers = range(1, len(mean) + 1)
        by_layer.plot(layers, mean, style, color=colours[depth], label=label, linewidth=1.5)
        by_size.plot(layers, sorted(mean, reverse=True), style, color=colours[depth], label=label, linewidth=1.5)
    by_layer.set_xlabel("layer index (original)")
    by_size.set_xlabel("layer index (sorted by magnitude)")
    for ax in (by_layer, by_size):
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    by_layer.set_title("Std of 3x3 layer responses (after BN, before addition/ReLU), final weights")
    fig.tight_layout()
    fig.savefig(root / RESPONSES_FILE, dpi=120)
    plt.close(fig)
    return RESPONSES_FILE


def write_report(root: str | Path, responses: bool = True) -> Path:
    """Read the runs below ``root`` and write ``root/report.md`` and its plots; return its path."""
    root = Path(root)
    runs = read_runs(root)
    groups = group_runs(runs)
    response_problems = read_responses(root, runs) if responses else []
    plots = [
        name
        for name in (
            plot_training_curves(root, runs),
            plot_error_vs_depth(root, groups),
            plot_layer_responses(root, runs) if responses else None,
        )
        if name
    ]
    return write_markdown(root, runs, groups, plots, response_problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_cifar.report",
        description="Write DIR/report.md (test error per variant and depth beside the paper's) and plots.",
    )
    parser.add_argument("dir", metavar="DIR", help="a sweep or outputs directory; every run below it is read")
    parser.add_argument(
        "--no-responses",
        action="store_true",
        help="skip Fig. 7 (layer responses), which loads every final checkpoint and the validation data",
    )
    args = parser.parse_args(argv)
    try:
        path = write_report(args.dir, responses=not args.no_responses)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write the report into {args.dir}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
