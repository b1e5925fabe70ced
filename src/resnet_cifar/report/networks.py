"""Which network a run trained, as the report names and counts it: the paper's CIFAR networks by
their variant and depth (resnet, resnet-B, plain), any other network by its config name."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from resnet_cifar.allowed_networks import project_networks

# Settings shown in columns of their own (depth), or that every CIFAR network has.
IN_COLUMNS = ("depth", "num_classes")


def frozen(value: Any) -> Any:
    """A plain config value as a hashable one (lists as tuples, anything else unusual as text)."""
    if isinstance(value, (list, tuple)):
        return tuple(frozen(item) for item in value)
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


@dataclass(frozen=True)
class Network:
    """A run's network: its ``target``, its ``settings`` and its config ``name`` (model=<name>)."""

    target: str | None
    settings: tuple[tuple[str, Any], ...] = ()  # sorted by key
    name: str = "?"

    @property
    def papers(self) -> bool:
        """One of the paper's CIFAR networks (the project's conf/model/ networks)."""
        return self.target in project_networks()

    def setting(self, key: str, default: Any = None) -> Any:
        return dict(self.settings).get(key, default)

    @property
    def depth(self) -> int | None:
        depth = self.setting("depth")
        return depth if isinstance(depth, int) and not isinstance(depth, bool) else None

    @property
    def variant(self) -> str:
        """``resnet`` (option A), ``resnet-B`` (projections) or ``plain`` for the paper's networks;
        else the config name, with the settings that tell its runs apart (``wide (width=4)``)."""
        if self.papers:
            if self.setting("residual", True) is not True:
                return "plain"
            shortcut = self.setting("shortcut", "A")
            return "resnet" if shortcut == "A" else f"resnet-{shortcut}"
        extra = [f"{key}={value}" for key, value in self.settings if key not in IN_COLUMNS]
        return f"{self.name} ({', '.join(extra)})" if extra else self.name

    @property
    def title(self) -> str:
        """``ResNet-56``, ``plain-20``, ``ResNet-B-20``, ``wide-16``: a line's name in a figure."""
        if not self.papers:
            return self.variant if self.depth is None else f"{self.variant}-{self.depth}"
        kind = "plain" if self.variant == "plain" else self.variant.replace("resnet", "ResNet")
        return f"{kind}-{self.depth}"


def network_of(model: Any, choice: Any) -> Network:
    """The network of a run's ``model`` config (references resolved) and its config ``choice``."""
    if not isinstance(model, dict):
        return Network(None)
    target = model.get("_target_")
    settings = tuple(sorted((str(key), frozen(value)) for key, value in model.items() if key != "_target_"))
    name = choice if isinstance(choice, str) else str(target).rsplit(".", 1)[-1]
    return Network(target if isinstance(target, str) else None, settings, name)


@cache
def papers_parameter_count(depth: int, shortcut: str, residual: bool, num_classes: int) -> int:
    from resnet_cifar.models import cifar_resnet

    net = cifar_resnet(depth=depth, shortcut=shortcut, residual=residual, num_classes=num_classes)
    return sum(p.numel() for p in net.parameters())


def parameter_count(network: Network, recorded: list[Any]) -> int | None:
    """The parameters of ``network``: as its runs recorded them (metrics.json's ``parameters``),
    else counted for the paper's networks; None where neither says."""
    counts = {count for count in recorded if isinstance(count, int) and not isinstance(count, bool)}
    if counts:
        return max(counts)
    classes = network.setting("num_classes")
    if network.papers and network.depth is not None and isinstance(classes, int):
        residual = network.setting("residual", True) is True
        try:
            return papers_parameter_count(network.depth, network.setting("shortcut", "A"), residual, classes)
        except Exception:  # settings the paper's network refuses: the run says nothing of its size
            return None
    return None
