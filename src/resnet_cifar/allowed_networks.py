"""The networks that a file from elsewhere may name, and building one from its settings.

A checkpoint or an exported network says which network it holds (``_target_``) and with which
settings; that name is the only code a file may choose. It must be one of:

- the project's networks (those named in conf/model/);
- the network the command's own config names (``model=...``, conf/, this site's settings);
- a network the user allowed: ``trusted_targets`` (a config key of the commands, a keyword of
  ``ImageClassifier.load_from_checkpoint``) and the environment variable
  RESNET_CIFAR_TRUSTED_TARGETS, each entry a network (``my_lab.nets.WideResNet``) or a module
  prefix (``my_lab.nets``: what is defined below it).

The settings are then checked as the network's keyword arguments (:mod:`resnet_cifar.typed_settings`)
and the network is called with them directly: nothing else of the file is instantiated.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from resnet_cifar import CONFIG_DIR
from resnet_cifar.errors import UntrustedConfig
from resnet_cifar.typed_settings import BadSetting, keyword_arguments, shown

ENVIRONMENT_VARIABLE = "RESNET_CIFAR_TRUSTED_TARGETS"
# A dotted Python name: what a user can name in an allow-list.
DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@functools.cache
def project_networks() -> frozenset[str]:
    """The networks that the project's conf/model/ names (this site's configs are the command's)."""
    names = set()
    for path in sorted((CONFIG_DIR / "model").glob("*.yaml")):
        target = (yaml.safe_load(path.read_text()) or {}).get("_target_")
        if isinstance(target, str):
            names.add(target)
    return frozenset(names)


def user_entries(entries: Iterable[str] = ()) -> tuple[str, ...]:
    """The user's networks and module prefixes: ``entries`` and RESNET_CIFAR_TRUSTED_TARGETS
    (separated by commas or spaces); a trailing ``.*`` is the same as the prefix alone."""
    from_environment = re.split(r"[,\s]+", os.environ.get(ENVIRONMENT_VARIABLE, ""))
    cleaned = (str(entry).strip().removesuffix(".*") for entry in [*entries, *from_environment])
    return tuple(dict.fromkeys(entry for entry in cleaned if entry))


@dataclass(frozen=True)
class AllowedNetworks:
    """The networks a file may name: ``names`` exactly, or anything defined below one of the
    user's ``entries`` (a network, or a module prefix such as ``my_lab.nets``)."""

    names: frozenset[str]
    entries: tuple[str, ...] = ()

    @classmethod
    def default(cls, entries: Iterable[str] = ()) -> AllowedNetworks:
        """The project's networks, ``entries`` and RESNET_CIFAR_TRUSTED_TARGETS."""
        return cls(project_networks(), user_entries(entries))

    @classmethod
    def of_command(cls, cfg: Mapping[str, Any]) -> AllowedNetworks:
        """Those of :meth:`default`, the network of the command's own config (``cfg.model``) and its
        ``trusted_targets``: what the user runs is theirs to trust."""
        listed = cfg.get("trusted_targets") or []
        default = cls.default([listed] if isinstance(listed, str) else list(listed))
        own = (cfg.get("model") or {}).get("_target_")
        return cls(default.names | ({own} if isinstance(own, str) else set()), default.entries)

    def refusal(self, target: Any) -> str | None:
        """Why ``target`` may not be built from a file, or None where it may."""
        if not isinstance(target, str) or not DOTTED_NAME.match(target):
            return "which is not the dotted name of a Python object"
        if target in self.names or target in self.entries:
            return None
        for entry in self.entries:
            if target.startswith(entry + "."):
                return refusal_below(target, entry)
        return "which is not one of the project's networks nor one you allowed"


def refusal_below(target: str, entry: str) -> str | None:
    """Why ``target``, below the user's ``entry``, may not be built: it must be defined there.

    ``my_lab.nets.torch.load`` is below ``my_lab.nets`` by name, but is torch's function that the
    module imported; following names through a module's imports would trust everything.
    """
    if any(part.startswith("__") for part in target.split(".")):
        return f"which lies below your trusted {entry!r} but goes through a special attribute"
    try:  # importing below the entry runs only modules that the user trusts
        found = located(target)
    except Exception as error:
        return f"which lies below your trusted {entry!r} but cannot be imported ({type(error).__name__}: {error})"
    defined = f"{getattr(found, '__module__', None)}.{getattr(found, '__qualname__', None)}"
    if inspect.ismodule(found) or not (defined == entry or defined.startswith(entry + ".")):
        where = "a module" if inspect.ismodule(found) else f"defined as {defined}"
        return f"which lies below your trusted {entry!r} by name but is {where}; allow that by its own name"
    return None


def located(dotted: str) -> Any:
    """The object that a dotted name of a module and its attributes names (imports the module)."""
    from hydra.utils import get_object

    return get_object(dotted)


def how_to_allow(target: Any) -> str:
    if not isinstance(target, str) or not DOTTED_NAME.match(target):
        return "Use a checkpoint written by resnet-cifar's train"
    return (
        f"If it is your own network, or you trust its author's code, allow it with trusted_targets=[{target}] "
        f"(an override of the commands, or a keyword of load_from_checkpoint) or {ENVIRONMENT_VARIABLE}={target}"
    )


def network_function(target: Any, allowed: AllowedNetworks, source: str) -> Callable[..., Any]:
    """The network function or class ``target`` names, once ``allowed`` allows it."""
    refusal = allowed.refusal(target)
    if refusal is not None:
        raise UntrustedConfig(
            f"{source} holds the network {shown(target)}, {refusal}; nothing was built. {how_to_allow(target)}"
        )
    try:
        return located(target)
    except Exception as error:
        raise UntrustedConfig(f"{source} holds the network {target}, which cannot be imported here ({error})") from None


def network_config(settings: Mapping[str, Any], allowed: AllowedNetworks, source: str) -> dict[str, Any]:
    """``settings`` (``_target_`` and the network's arguments, as read from a file) checked: the
    target allowed, every other key a typed argument of it. The result is a config of plain values
    that Hydra's ``instantiate`` builds into the network and nothing else."""
    target = settings.get("_target_")
    function = network_function(target, allowed, source)
    arguments = {key: value for key, value in settings.items() if key != "_target_"}
    try:
        return {"_target_": target, **keyword_arguments(function, arguments, "network setting")}
    except BadSetting as bad:
        raise UntrustedConfig(f"{source}: {bad}; nothing was built") from None


def build_network(settings: Mapping[str, Any], allowed: AllowedNetworks, source: str) -> Any:
    """The network of ``settings`` (see :func:`network_config`), called with its checked arguments."""
    config = network_config(settings, allowed, source)
    function = located(config.pop("_target_"))
    return function(**config)
