"""What a config read from a file may make the project build.

A checkpoint's run config and hyper-parameters are data from whoever wrote the file, but Hydra's
``instantiate`` calls whatever ``_target_`` a config names, and OmegaConf runs the resolvers its
interpolations name (``${oc.env:...}`` reads the environment). So before anything is built from
such a config, every ``_target_`` in it must be one of:

- those named in the project's own conf/ tree;
- torch.optim's optimizers and learning-rate schedulers;
- Lightning's Trainer, callbacks, loggers and plugins;
- those the command's own config names (conf/, this site's settings, the command line);
- what the user trusts: ``trusted_targets`` (a config key, a keyword of
  ``ImageClassifier.load_from_checkpoint``) and the environment variable
  RESNET_CIFAR_TRUSTED_TARGETS, each entry a target or a module prefix;

and it may hold no interpolation: the project saves configs resolved, so one in a checkpoint
was put there by hand. A run folder's ``.hydra/config.yaml`` keeps its interpolations; where it
is read (the report), resolver calls are blanked, so that reading it runs nothing.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from resnet_cifar import CONFIG_DIR
from resnet_cifar.errors import UntrustedConfig

ENVIRONMENT_VARIABLE = "RESNET_CIFAR_TRUSTED_TARGETS"
# A dotted Python name: what a user can name in an allow-list.
DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
BUILT_IN = (
    "the project's conf/, torch.optim's optimizers and schedulers, Lightning's Trainer, callbacks, loggers and plugins"
)
# Modules whose public classes derived from one of the bases are trusted, under every name they
# are reachable by (torch.optim.SGD and torch.optim.sgd.SGD).
LIBRARY_PARTS = (
    ("torch.optim", ("torch.optim.Optimizer",)),
    (
        "torch.optim.lr_scheduler",
        ("torch.optim.lr_scheduler.LRScheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"),
    ),
    ("torch.optim.swa_utils", ("torch.optim.lr_scheduler.LRScheduler",)),
    ("lightning.pytorch.callbacks", ("lightning.pytorch.callbacks.Callback",)),
    ("lightning.pytorch.loggers", ("lightning.pytorch.loggers.Logger",)),
    ("lightning.pytorch.plugins", ("object",)),
    ("lightning.pytorch.plugins.environments", ("lightning.fabric.plugins.environments.ClusterEnvironment",)),
    ("lightning.pytorch.plugins.io", ("object",)),
    ("lightning.pytorch.plugins.precision", ("object",)),
)
TRAINER = ("lightning.pytorch.Trainer", "lightning.Trainer", "lightning.pytorch.trainer.trainer.Trainer")
SHOWN_CHARACTERS = 120  # of a value from a file, in a message


def shown(value: Any) -> str:
    """A value from a file, quoted and with control characters escaped, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 3] + "..."


def walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted key, value) below ``node`` in plain dicts and lists, ``trainer.plugins[0]._target_``
    style; without recursion, so that a deeply nested file is no problem."""
    stack = [(key, node)]
    while stack:
        key, node = stack.pop()
        yield key, node
        if isinstance(node, Mapping):
            children = [(f"{key}.{k}" if key else str(k), v) for k, v in node.items()]
        elif isinstance(node, (list, tuple)):
            children = [(f"{key}[{i}]", v) for i, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))


def targets_in(node: Any) -> set[str]:
    """Every ``_target_`` string below ``node`` (a plain container)."""
    return {value for key, value in walk(node) if key.rsplit(".", 1)[-1] == "_target_" and isinstance(value, str)}


@functools.cache
def conf_targets() -> frozenset[str]:
    """The targets that the project's conf/ tree names (this site's settings included)."""
    found: set[str] = set()
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        found |= targets_in(yaml.safe_load(path.read_text()))
    return frozenset(found)


def located(dotted: str) -> Any:
    """The object that a dotted name of a library's module and attribute names."""
    module_name, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


@functools.cache
def library_targets() -> frozenset[str]:
    """torch.optim's optimizers and schedulers and Lightning's parts, each under its public name
    and the name of the module that defines it."""
    found: set[str] = set(TRAINER)
    for module_name, base_names in LIBRARY_PARTS:
        module = importlib.import_module(module_name)
        bases = tuple(located(name) if name != "object" else object for name in base_names)
        names = getattr(module, "__all__", None) or [name for name in dir(module) if not name.startswith("_")]
        for name in names:
            part = getattr(module, name, None)
            if not inspect.isclass(part) or part in bases or not issubclass(part, bases):
                continue
            if not part.__module__.startswith(("torch.optim", "lightning.")) or part.__name__.startswith("_"):
                continue  # a class re-exported from elsewhere, or a private one
            found |= {f"{module_name}.{name}", f"{part.__module__}.{part.__qualname__}"}
    return frozenset(found)


def user_entries(entries: Iterable[str] = ()) -> tuple[str, ...]:
    """The user's trusted targets and module prefixes: ``entries`` and RESNET_CIFAR_TRUSTED_TARGETS
    (separated by commas or spaces); a trailing ``.*`` is the same as the prefix alone."""
    from_environment = re.split(r"[,\s]+", os.environ.get(ENVIRONMENT_VARIABLE, ""))
    cleaned = (str(entry).strip().removesuffix(".*") for entry in [*entries, *from_environment])
    return tuple(dict.fromkeys(entry for entry in cleaned if entry))


@dataclass(frozen=True)
class TrustedTargets:
    """The targets a config from a file may name: ``names`` exactly, or anything defined below
    one of the user's ``entries`` (a target, or a module prefix such as ``my_lab.nets``)."""

    names: frozenset[str]
    entries: tuple[str, ...] = ()

    @classmethod
    def default(cls, entries: Iterable[str] = ()) -> TrustedTargets:
        """The project's, torch's and Lightning's targets, ``entries`` and RESNET_CIFAR_TRUSTED_TARGETS."""
        return cls(conf_targets() | library_targets(), user_entries(entries))

    @classmethod
    def of_command(cls, cfg: DictConfig) -> TrustedTargets:
        """Those of :meth:`default`, the targets the command's own composed config names, and its
        ``trusted_targets``: what the user runs is theirs to trust."""
        own = OmegaConf.to_container(cfg, resolve=False)
        listed = cfg.get("trusted_targets")
        if OmegaConf.is_config(listed):
            listed = OmegaConf.to_container(listed)
        default = cls.default([listed] if isinstance(listed, str) else listed or [])
        return cls(default.names | targets_in(own), default.entries)

    def refusal(self, target: Any) -> str | None:
        """Why ``target`` may not be built from a file, or None where it may."""
        if not isinstance(target, str) or not DOTTED_NAME.match(target):
            return "which is not the dotted name of a Python object"
        if target in self.names or target in self.entries:
            return None
        for entry in self.entries:
            if target.startswith(entry + "."):
                return self.refusal_below(target, entry)
        return f"which is not among the targets a file may name ({BUILT_IN}, and those you allowed)"

    @staticmethod
    def refusal_below(target: str, entry: str) -> str | None:
        """Why ``target``, below the user's ``entry``, may not be built: it must be defined there.

        ``my_lab.nets.torch.load`` is below ``my_lab.nets`` by name, but is torch's function that
        the module imported; following names through a module's imports would trust everything.
        """
        if any(part.startswith("__") for part in target.split(".")):
            return f"which lies below your trusted {entry!r} but goes through a special attribute"
        try:  # importing below the entry runs only modules that the user trusts
            from hydra.utils import get_object

            found = get_object(target)
        except Exception as error:
            return f"which lies below your trusted {entry!r} but cannot be imported ({type(error).__name__}: {error})"
        defined = f"{getattr(found, '__module__', None)}.{getattr(found, '__qualname__', None)}"
        if inspect.ismodule(found) or not (defined == entry or defined.startswith(entry + ".")):
            where = "a module" if inspect.ismodule(found) else f"defined as {defined}"
            return f"which lies below your trusted {entry!r} by name but is {where}; allow that by its own name"
        return None


def how_to_allow(target: Any) -> str:
    if not isinstance(target, str) or not DOTTED_NAME.match(target):
        return "Use a checkpoint written by resnet-cifar's train"
    return (
        f"If you trust the file's author and that code, allow it with trusted_targets=[{target}] (an override of "
        f"the commands, or a keyword of load_from_checkpoint) or {ENVIRONMENT_VARIABLE}={target}"
    )


def has_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def check_file_config(config: Any, source: str, trusted: TrustedTargets, key: str = "") -> None:
    """Refuse, before anything is built from it, a config read from a file (``source``: "checkpoint
    PATH") that names a target ``trusted`` does not allow, or that holds an interpolation."""
    for where, value in walk(config, key):
        named = where if where.isprintable() else shown(where)  # keys come from the file too
        if has_interpolation(value):
            raise UntrustedConfig(
                f"{source} holds an interpolation at {named}: {shown(value)}; configs are saved resolved, so it was "
                "put there by hand, and it is not resolved (it could read the environment or run a resolver); "
                "nothing was built. Use a checkpoint written by resnet-cifar's train"
            )
        if where.rsplit(".", 1)[-1] != "_target_":
            continue
        refusal = trusted.refusal(value)
        if refusal is not None:
            raise UntrustedConfig(
                f"{source} names {named}={shown(value)}, {refusal}; nothing was built. {how_to_allow(value)}"
            )


def has_resolver_call(value: Any) -> bool:
    """Whether a string may call a resolver when read. Conservative: a node interpolation
    (``${data.num_classes}``) cannot hold a ':' in OmegaConf's grammar, a resolver call must
    (``${oc.env:HOME}``, also with a resolver name that is itself interpolated)."""
    return isinstance(value, str) and "${" in value and ":" in value[value.index("${") :]


def load_without_resolvers(path: str | Path) -> DictConfig:
    """A YAML config from a run folder, with every value that could call a resolver replaced by
    ``???`` (missing): reading it then runs no resolver, and node interpolations still work."""

    def blank(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: blank(value) for key, value in node.items()}
        if isinstance(node, list):
            return [blank(value) for value in node]
        return "???" if has_resolver_call(node) else node

    return OmegaConf.create(blank(OmegaConf.to_container(OmegaConf.load(path), resolve=False)))
