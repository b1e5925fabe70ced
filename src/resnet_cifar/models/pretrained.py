"""Trained networks shared the way the field shares them: a folder of ``model.safetensors`` (the
weights), ``config.json`` (the network's settings) and ``README.md`` (its model card), the layout of
the Hugging Face Hub's model repositories. ``resnet-cifar-export`` writes one from a checkpoint::

    from resnet_cifar.models import load_pretrained
    net = load_pretrained("resnet20-cifar10")    # a folder, e.g. huggingface_hub.snapshot_download(repo_id)
    logits = net(images)                         # RGB images, N x 3 x 32 x 32, values in [0, 1]

The network subtracts the mean image of its training split itself (as the training did), so it
takes images as they are. Loading runs no code from the folder: ``config.json`` holds settings
only, checked against the network function's own signature, and safetensors holds tensors only.
Neither Lightning nor Hydra is needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_cifar.errors import CheckpointError
from resnet_cifar.files import atomic_write
from resnet_cifar.models.resnet import cifar_resnet
from resnet_cifar.received_files import UnreadableFile, read_bytes, read_json
from resnet_cifar.typed_settings import BadSetting, keyword_arguments, plain_value, shown

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
FORMAT = "resnet-cifar/network-1"
# config.json's "architecture" for the paper's networks; a network of one's own is named by its
# dotted name, and loading it takes that function (``network=``).
PAPER_ARCHITECTURE = "cifar_resnet"
CONFIG_KEYS = ("format", "architecture", "network", "data")
MAX_WEIGHTS_BYTES = 4 * 1024**3


class MeanSubtracted(nn.Module):
    """``network`` applied to images minus ``mean_image``, the mean of its training split."""

    def __init__(self, network: nn.Module, mean_image: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean_image", mean_image)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images - self.mean_image)


@dataclass(frozen=True)
class ExportedNetwork:
    """What an exported folder holds, read and checked as data."""

    architecture: str
    settings: dict[str, Any]  # the network function's keyword arguments (plain values)
    data: dict[str, Any]  # how its training data was split (plain values)
    weights: dict[str, torch.Tensor]  # MeanSubtracted's state dict


def save_pretrained(
    folder: str | Path,
    weights: Mapping[str, torch.Tensor],
    mean_image: torch.Tensor,
    settings: Mapping[str, Any],
    architecture: str = PAPER_ARCHITECTURE,
    data: Mapping[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Write a network's ``weights`` (its state dict), the ``mean_image`` it subtracts from its
    inputs and the ``settings`` that ``architecture`` builds it with to ``folder``, each file whole."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"network.{key}": value for key, value in weights.items()} | {"mean_image": mean_image}
    tensors = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    config = {"format": FORMAT, "architecture": architecture, "network": dict(settings), "data": dict(data or {})}
    with atomic_write(folder / WEIGHTS_FILE) as temporary:  # written by Python: the user's umask applies
        temporary.write_bytes(save(tensors, metadata={"format": "pt"}))
    with atomic_write(folder / CONFIG_FILE) as temporary:
        temporary.write_text(json.dumps(config, indent=2) + "\n")
    if card is not None:
        with atomic_write(folder / CARD_FILE) as temporary:
            temporary.write_text(card)
    return folder


def is_exported(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).exists()


def read_exported(folder: str | Path) -> ExportedNetwork:
    """The settings and weights of an exported ``folder``, read as data: a config.json with other
    keys or values that are not plain is refused with :class:`~resnet_cifar.errors.CheckpointError`."""
    from safetensors.torch import load

    source = f"exported network {folder}"
    try:
        config = read_json(Path(folder) / CONFIG_FILE)
        weights = load(read_bytes(Path(folder) / WEIGHTS_FILE, MAX_WEIGHTS_BYTES))
    except UnreadableFile as error:
        raise CheckpointError(f"{source} cannot be read: {error}; export it again with resnet-cifar-export") from None
    except Exception as error:  # safetensors' own errors for a truncated or foreign file
        raise CheckpointError(f"{source}: {WEIGHTS_FILE} cannot be read ({error}); export it again") from None
    try:
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise BadSetting(f"{CONFIG_FILE} is not of the format {FORMAT!r}")
        unknown = [key for key in config if key not in CONFIG_KEYS]
        if unknown:
            raise BadSetting(f"{CONFIG_FILE} has unknown keys {', '.join(shown(key) for key in unknown)}")
        architecture = plain_value(config.get("architecture"), "architecture")
        settings, data = config.get("network"), config.get("data", {})
        if not isinstance(architecture, str) or not isinstance(settings, dict) or not isinstance(data, dict):
            raise BadSetting(f"{CONFIG_FILE} needs an architecture name and the network's settings")
        settings = {key: plain_value(value, f"network setting {key}") for key, value in settings.items()}
        data = {key: plain_value(value, f"data setting {key}") for key, value in data.items()}
    except BadSetting as bad:
        raise CheckpointError(f"{source}: {bad}; export it again with resnet-cifar-export") from None
    return ExportedNetwork(architecture, settings, data, weights)


def load_pretrained(folder: str | Path, network: Callable[..., nn.Module] | None = None) -> MeanSubtracted:
    """The network exported to ``folder``, with its weights, in eval mode. ``network`` is the
    function that builds it: by default the paper's (``cifar_resnet``); a network of your own
    needs its function (config.json's ``architecture`` says which), called with config.json's
    settings checked against its signature."""
    exported = read_exported(folder)
    function = network or cifar_resnet
    if network is None and exported.architecture != PAPER_ARCHITECTURE:
        raise CheckpointError(
            f"exported network {folder} is a {shown(exported.architecture)}, not the paper's network: "
            "pass its function, load_pretrained(folder, network=...)"
        )
    try:
        arguments = keyword_arguments(function, exported.settings, "network setting")
    except BadSetting as bad:
        raise CheckpointError(f"exported network {folder}: {bad}; export it again with resnet-cifar-export") from None
    mean_image = exported.weights.get("mean_image")
    if mean_image is None:
        raise CheckpointError(f"exported network {folder} has no mean_image in {WEIGHTS_FILE}; export it again")
    model = MeanSubtracted(function(**arguments), torch.zeros_like(mean_image))
    try:
        model.load_state_dict(exported.weights)
    except RuntimeError as error:
        reason = " ".join(str(error).split())
        raise CheckpointError(f"exported network {folder}: its weights do not fit its settings ({reason})") from None
    return model.eval()
