"""Paper Fig. 7: the standard deviation of every 3x3 layer's response in the final networks."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from resnet_cifar.errors import UntrustedConfig
from resnet_cifar.report.plotting import pyplot
from resnet_cifar.report.recipes import Recipe, recipe_labels
from resnet_cifar.report.runs import ReportError, Run, relative
from resnet_cifar.trusted_targets import load_without_resolvers

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


def validation_images(data_config: dict[str, Any], run_path: Path, cache: dict) -> Any:
    """The first RESPONSE_IMAGES validation images of the run's data (test images if it has no
    validation split), normalised as in training. Data modules are cached per data config."""
    from hydra.utils import instantiate

    config = dict(data_config)
    root = Path(str(config.get("root", "data")))
    if config.get("dataset") != "synthetic" and not root.is_absolute() and not root.exists():
        try:  # relative to where the run was started
            cwd = load_without_resolvers(run_path / ".hydra" / "hydra.yaml").hydra.runtime.cwd
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

    from resnet_cifar.models import cifar_resnet
    from resnet_cifar.training.checkpoints import checkpoint_config, read_checkpoint
    from resnet_cifar.trusted_targets import TrustedTargets, check_file_config

    path = run.path / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    # Of the run's config only the data config is built here (the network is built from its
    # settings, not its target): a run's own callbacks or logger do not keep it out of the figure.
    check_file_config(config["data"], f"checkpoint {path}", TrustedTargets.default(), key="data")
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
        except UntrustedConfig as error:  # not a broken run: a file to look at before anything is built
            raise ReportError(
                f"{error}; or leave out Fig. 7, which loads the runs' checkpoints, with --no-responses"
            ) from None
        except Exception as error:  # a missing checkpoint or data root: the rest of the report stands
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            problems.append(f"{relative(run.path, root)}: {reason}")
    return problems


def plot_layer_responses(root: Path, runs: list[Run]) -> str | None:
    """Paper Fig. 7: per layer, and sorted by magnitude; plain dashed, ResNets solid."""
    plt = pyplot()

    groups: dict[tuple[str, int, Recipe], list[list[float]]] = defaultdict(list)
    for run in runs:
        if run.responses:  # runs trained differently are not averaged together
            groups[(run.variant, run.depth, run.recipe)].append(run.responses)
    if not groups:
        return None
    depths = sorted({depth for _, depth, _ in groups})
    labels = recipe_labels({recipe for _, _, recipe in groups})
    colours = {d: plt.cm.viridis(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}
    fig, (by_layer, by_size) = plt.subplots(2, 1, figsize=(8, 7))
    for (variant, depth, recipe), series in sorted(groups.items(), key=lambda item: (item[0][0] != "plain", item[0])):
        mean = [statistics.fmean(values) for values in zip(*series)]
        style = "--" if variant == "plain" else "-"
        label = f"{'plain' if variant == 'plain' else variant.replace('resnet', 'ResNet')}-{depth}{labels[recipe]}"
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
