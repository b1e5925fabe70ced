"""An optimizer or learning-rate schedule read from a file, mapped to torch.optim by the project.

A checkpoint records the optimizer and scheduler configs it was trained with (``_target_:
torch.optim.SGD``, ``_partial_: true``, ``lr: 0.1``...). A module rebuilt from it gets them back
only as torch.optim's own classes, found by name in torch.optim's tables below, with their
settings checked as the class's typed arguments: the file chooses among torch.optim's optimizers
and schedulers, and cannot name anything else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch

from resnet_cifar.typed_settings import BadSetting, keyword_arguments, shown

# Schedulers built from other schedulers or from functions: no file's plain settings make one.
NOT_FROM_SETTINGS = frozenset({"LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler"})
# The first argument, which the module passes: the parameters, or the optimizer.
PASSED_BY_THE_MODULE = {"optimizer": "params", "scheduler": "optimizer"}


def public_classes(module: ModuleType, bases: tuple[type, ...], abstract: type) -> dict[str, type]:
    """The public classes of ``module`` derived from one of ``bases``, but for the ``abstract`` one."""
    names = getattr(module, "__all__", None) or dir(module)
    found = {}
    for name in names:
        part = getattr(module, name, None)
        if not name.startswith("_") and inspect.isclass(part) and issubclass(part, bases) and part is not abstract:
            found[name] = part
    return found


@functools.cache
def torch_classes(kind: str) -> dict[str, type]:
    """torch.optim's optimizers (``kind="optimizer"``) or learning-rate schedulers, by name."""
    if kind == "optimizer":
        return public_classes(torch.optim, (torch.optim.Optimizer,), torch.optim.Optimizer)
    schedulers = torch.optim.lr_scheduler
    found = public_classes(schedulers, (schedulers.LRScheduler, schedulers.ReduceLROnPlateau), schedulers.LRScheduler)
    return {name: part for name, part in found.items() if name not in NOT_FROM_SETTINGS}


def torch_class(kind: str, target: Any) -> tuple[str, type] | None:
    """The public name and class of torch.optim that ``target`` names (``torch.optim.SGD`` or
    ``torch.optim.sgd.SGD``), or None."""
    if not isinstance(target, str):
        return None
    name = target.rsplit(".", 1)[-1]
    found = torch_classes(kind).get(name)
    if found is None:
        return None
    public = f"{'torch.optim' if kind == 'optimizer' else 'torch.optim.lr_scheduler'}.{name}"
    return (public, found) if target in (public, f"{found.__module__}.{found.__qualname__}") else None


def torch_optim_config(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` of an ``optimizer`` or ``scheduler`` (a ``_partial_`` config read from a file)
    as the config of torch.optim's class it names, with its arguments checked; BadSetting if the
    target is not one of torch.optim's or an argument does not fit."""
    target = settings.get("_target_")
    found = torch_class(kind, target)
    if found is None:
        choices = ", ".join(sorted(torch_classes(kind)))
        raise BadSetting(f"{kind} {shown(target)} is not one of torch.optim's that a file may name ({choices})")
    if settings.get("_partial_", True) is not True:
        raise BadSetting(f"{kind} must be a _partial_ config (its {PASSED_BY_THE_MODULE[kind]} are the module's)")
    public, cls = found
    arguments = {key: value for key, value in settings.items() if key not in ("_target_", "_partial_")}
    if PASSED_BY_THE_MODULE[kind] in arguments:
        raise BadSetting(f"{kind} setting {PASSED_BY_THE_MODULE[kind]} is passed by the module, not by a file")
    return {"_target_": public, "_partial_": True, **keyword_arguments(cls.__init__, arguments, f"{kind} setting")}
