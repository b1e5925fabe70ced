"""Paper Fig. 7: the standard deviation of every 3x3 layer's response in the final networks."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from resnet_cifar.received_files import UnreadableFile
from resnet_cifar.report.figures import data_names, line_order
from resnet_cifar.report.networks import Network
from resnet_cifar.report.plotting import pyplot, save_figure
from resnet_cifar.report.recipes import Recipe, recipe_labels
from resnet_cifar.report.runs import Run, read_only_data, relative

RESPONSES_FILE = "layer_responses.png"
RESPONSE_IMAGES = 256  # validation images through each final network for Fig. 7


def response_layers(net: Any) -> list[Any]:
    """The BN after every 3x3 convolution, in network order (not the 1x1 projections' BN)."""
    from torch import nn

    return [
        module
        for name, module in net.named_modules()
        if isinstance(module, nn.BatchNorm2d) and "shortcut" not in name.split(".")
    ]


def validation_images(data: dict[str, Any], run_path: Path, cache: dict) -> Any:
    """The first RESPONSE_IMAGES validation images of the run's data (test images if it has no
    validation split), normalised as in training. Data modules are cached per data settings.
    The run's data folder is read, never written to."""
    from resnet_cifar.data import CIFARDataModule

    data = read_only_data(data, run_path)
    key = json.dumps(data, sort_keys=True, default=str)
    if key not in cache:
        datamodule = CIFARDataModule(**data)
        datamodule.setup("validate")
        images = datamodule.val_set.images if len(datamodule.val_set) else datamodule.test_set.images
        cache[key] = datamodule.normalize(images[:RESPONSE_IMAGES].clone())
    return cache[key]


def layer_response_stds(run: Run, data_cache: dict) -> list[float]:
    """Std of each 3x3 layer's output after BN, before the addition and ReLU (paper Fig. 7),
    of the run's final network (checkpoints/last.ckpt) on validation images. The checkpoint is
    read as data: its network must be one of the project's or one allowed by
    RESNET_CIFAR_TRUSTED_TARGETS, built from its typed settings."""
    import torch

    from resnet_cifar.allowed_networks import AllowedNetworks, build_network
    from resnet_cifar.training.checkpoints import data_arguments, read_trained

    if (run.path / "checkpoints").is_symlink():
        raise UnreadableFile("checkpoints/ is a symbolic link, which is not followed")
    trained = read_trained(run.path / "checkpoints" / "last.ckpt")
    net = build_network(trained.network, AllowedNetworks.default(), trained.source)
    net.load_state_dict(trained.network_weights)
    net.eval()
    images = validation_images(data_arguments(trained), run.path, data_cache)
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
        except Exception as error:  # a missing checkpoint or data root, a network not allowed: the rest stands
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            problems.append(f"{relative(run.path, root)}: {reason}")
    return problems


def plot_layer_responses(root: Path, runs: list[Run]) -> str | None:
    """Paper Fig. 7: per layer, and sorted by magnitude; plain dashed, ResNets solid."""
    plt = pyplot()

    groups: dict[tuple[Network, Recipe], list[list[float]]] = defaultdict(list)
    for run in runs:
        if run.responses:  # runs trained differently are not averaged together
            groups[(run.network, run.recipe)].append(run.responses)
    if not groups:
        return None
    depths = sorted({network.depth or 0 for network, _ in groups})
    labels = recipe_labels({recipe for _, recipe in groups})
    colours = {d: plt.cm.viridis(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}
    fig, (by_layer, by_size) = plt.subplots(2, 1, figsize=(8, 7))
    order = lambda item: (item[0][0].variant != "plain", line_order(item[0][0]), item[0][1])  # noqa: E731
    for (network, recipe), series in sorted(groups.items(), key=order):
        mean = [statistics.fmean(values) for values in zip(*series)]
        style = "--" if network.variant == "plain" else "-"
        label = f"{network.title}{labels[recipe]}"
        depth = network.depth or 0
        layers = range(1, len(mean) + 1)
        by_layer.plot(layers, mean, style, color=colours[depth], label=label, linewidth=1.5)
        by_size.plot(layers, sorted(mean, reverse=True), style, color=colours[depth], label=label, linewidth=1.5)
    by_layer.set_xlabel("layer index (original)")
    by_size.set_xlabel("layer index (sorted by magnitude)")
    for ax in (by_layer, by_size):
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    shown = data_names([run for run in runs if run.responses])
    by_layer.set_title(f"Std of 3x3 layer responses on {shown} (after BN, before addition/ReLU), final weights")
    fig.tight_layout()
    return save_figure(fig, root / RESPONSES_FILE)
