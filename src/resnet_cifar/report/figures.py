"""Figures of a sweep: training curves (paper Fig. 6) and test error against depth."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from resnet_cifar.report.networks import Network
from resnet_cifar.report.plotting import pyplot, save_figure
from resnet_cifar.report.recipes import Recipe, recipe_labels
from resnet_cifar.report.runs import Run
from resnet_cifar.report.tables import Group

CURVES_FILE = "training_curves.png"
DEPTH_FILE = "error_vs_depth.png"


def averaged_curve(runs: list[Run], tag: str) -> tuple[list[int], list[float]]:
    """The mean over seeds at every step that all of them logged (else every step logged)."""
    series = [dict(run.curves[tag]) for run in runs if run.curves.get(tag)]
    if not series:
        return [], []
    common = set.intersection(*(set(s) for s in series))
    steps = sorted(common) if len(common) > 1 or len(series) == 1 else sorted(set().union(*series))
    values = [statistics.fmean(s[step] for s in series if step in s) for step in steps]
    return steps, values


def data_names(runs: list[Run]) -> str:
    """The data sets a figure shows, as its runs' configs name them (``cifar10``, ``synthetic``)."""
    return ", ".join(sorted({run.dataset for run in runs})) or "?"


def plot_training_curves(root: Path, runs: list[Run]) -> str | None:
    """Paper Fig. 6: per variant and recipe one panel, per network one colour; train err thin,
    val err bold; steps as the run's log and TensorBoard number them (optimizer steps done)."""
    plt = pyplot()

    panels: dict[tuple[str, Recipe], dict[Network, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.network.target is not None and run.curves:
            panels[(run.network.variant, run.recipe)][run.network].append(run)
    if not panels:
        return None
    keys = sorted(panels, key=lambda key: (key[1], key[0] != "plain", key[0]))  # plain left, as in the paper
    labels = recipe_labels({recipe for _, recipe in keys})
    networks = sorted({network for panel in panels.values() for network in panel}, key=line_order)
    colours = {n: plt.cm.viridis(i / max(1, len(networks) - 1) * 0.9) for i, n in enumerate(networks)}
    shown = [run for panel in panels.values() for group in panel.values() for run in group]
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), sharey=True, squeeze=False)
    for ax, (variant, recipe) in zip(axes[0], keys):
        for network in sorted(panels[(variant, recipe)], key=line_order):
            group = panels[(variant, recipe)][network]
            for tag, width, label in (("train/err", 0.8, None), ("val/err", 2.2, network.title)):
                steps, values = averaged_curve(group, tag)
                if steps:  # markers where a curve has few points (short runs) and a line shows little
                    marker = "o" if len(steps) < 10 else None
                    ax.plot(
                        steps,
                        values,
                        color=colours[network],
                        linewidth=width,
                        label=label,
                        marker=marker,
                        markersize=2 * width + 1,
                    )
        ax.set_title(variant + labels[recipe])
        ax.set_xlabel("iterations (optimizer steps done)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[0][0].set_ylabel("error (%)   thin: train, bold: val")
    fig.suptitle(f"Training on {data_names(shown)} (mean over seeds)")
    fig.tight_layout()
    return save_figure(fig, root / CURVES_FILE)


def line_order(network: Network) -> tuple:
    return (not network.papers, network.depth or 0, network.variant)


def plot_error_vs_depth(root: Path, groups: list[Group]) -> str | None:
    plt = pyplot()

    groups = [g for g in groups if g.depth is not None]  # a network without a depth has no place here
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    lines = sorted({(g.variant, g.recipe) for g in groups}, key=lambda key: (key[1], key[0] != "plain", key[0]))
    labels = recipe_labels({recipe for _, recipe in lines})
    for variant, recipe in lines:
        own = [g for g in groups if (g.variant, g.recipe) == (variant, recipe)]
        ax.errorbar(
            [g.depth for g in own],
            [g.mean for g in own],
            yerr=[g.std or 0.0 for g in own],
            marker="o",
            capsize=4,
            label=f"{variant}{labels[recipe]} (mean ± std)",
        )
    # The paper's curve beside runs of its recipe only.
    paper = sorted({(g.depth, g.paper) for g in groups if g.paper is not None and g.comparable})
    if paper:
        ax.plot(*zip(*paper), "k--", marker="x", alpha=0.6, label="paper (ResNet)")
    ax.set_xscale("log")
    ticks = sorted({g.depth for g in groups})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"Test error on {data_names([run for g in groups for run in g.runs])} vs depth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, root / DEPTH_FILE)
