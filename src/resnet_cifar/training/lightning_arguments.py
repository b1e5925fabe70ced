"""Where Lightning takes a module's constructor arguments from, and which of them cross as settings.

Lightning's ``load_from_checkpoint`` takes a module's arguments from more places than a
checkpoint's ``hyper_parameters``: the older keys ``hparams`` and ``module_arguments`` (merged
first), ``hparams_name`` (all of them as one argument), ``_instantiator`` and ``_class_path``
(another way to build the class), and an ``hparams_file`` in YAML or CSV that replaces them.
:func:`lightning_arguments` merges them as Lightning does, so that nothing placed in one of them
is missed; :func:`module_arguments` then takes from the result typed settings only. The module
is rebuilt from those (``ImageClassifier.load_from_checkpoint``) and nothing else of the file.
"""

from __future__ import annotations

import ast
import csv
import inspect
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from resnet_cifar.allowed_networks import AllowedNetworks, network_config
from resnet_cifar.errors import CheckpointError
from resnet_cifar.received_files import UnreadableFile, load_yaml_text, read_text
from resnet_cifar.training.optim_settings import torch_optim_config
from resnet_cifar.typed_settings import BadSetting, keyword_arguments

if TYPE_CHECKING:
    from resnet_cifar.training.checkpoints import Trained


def lightning_version() -> dict[str, str]:
    """The version key of a checkpoint written by this Lightning (so that it migrates nothing)."""
    import lightning

    return {"pytorch-lightning_version": lightning.__version__}


# Lightning's keys of a module's arguments, besides "hyper_parameters" (lightning.pytorch.core.saving).
PAST_ARGUMENT_KEYS = ("hparams", "module_arguments")


def hparams_file_arguments(path: str | Path) -> dict[str, Any]:
    """The arguments of an ``hparams_file`` (YAML, or Lightning's two-column CSV), read as data."""
    try:
        text = read_text(path)
        if Path(path).suffix.lower() == ".csv":
            rows = list(csv.reader(io.StringIO(text)))[1:]
            return {row[0]: literal(row[1]) for row in rows if len(row) == 2}
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            found = load_yaml_text(text, path)
            return found if isinstance(found, dict) else {}
    except UnreadableFile as error:
        raise CheckpointError(f"hparams_file {error}") from None
    raise CheckpointError(f"hparams_file {path} is neither .yaml, .yml nor .csv, the formats Lightning reads")


def literal(text: str) -> Any:
    """A CSV cell as Lightning reads it: a Python literal where it is one, else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def lightning_arguments(checkpoint: Mapping[str, Any], hparams_file: str | Path | None = None) -> dict[str, Any]:
    """The constructor arguments that Lightning's ``load_from_checkpoint`` would take from
    ``checkpoint`` (and ``hparams_file``), merged as it merges them."""
    arguments: dict[str, Any] = {}
    hyper_parameters = hparams_file_arguments(hparams_file) if hparams_file else checkpoint.get("hyper_parameters")
    for key in PAST_ARGUMENT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            arguments.update(checkpoint[key])
    if isinstance(hyper_parameters, Mapping):
        arguments.update(hyper_parameters)
    name = checkpoint.get("hparams_name")
    if isinstance(name, str) and name not in ("", "kwargs"):  # all of them as the one argument `name`
        arguments = {name: arguments}
    return arguments


def scheduler_settings(
    interval: Literal["step", "epoch"] = "step", frequency: int = 1, monitor: str | None = None, strict: bool = True
) -> dict[str, Any]:
    """Lightning's settings of a scheduler that a file may give (``lr_scheduler``), typed."""
    return {"interval": interval, "frequency": frequency, "monitor": monitor, "strict": strict}


def constructor(module_class: type) -> Any:
    """The ``__init__`` that names ``module_class``'s arguments (a subclass may pass ``*args, **kwargs`` on)."""
    for cls in module_class.__mro__:
        parameters = inspect.signature(cls.__init__).parameters.values()
        if any(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self" for p in parameters):
            return cls.__init__
    return module_class.__init__


def module_arguments(
    trained: Trained, module_class: type, allowed: AllowedNetworks, given: Iterable[str] = ()
) -> dict[str, Any]:
    """The arguments of ``module_class`` that ``trained`` gives, as data: the network's config
    (allowed and typed), the optimizer and scheduler mapped to torch.optim, Lightning's scheduler
    settings and the other typed arguments of the class. Those named in ``given`` are the caller's
    and are not read; keys the class does not take are left out, as Lightning leaves them out."""
    init = constructor(module_class)
    accepted = set(inspect.signature(init).parameters) - {"self"}
    arguments: dict[str, Any] = {}
    try:
        if "net" not in given:
            arguments["net"] = network_config(trained.network, allowed, trained.source)
        for kind in ("optimizer", "scheduler"):
            if kind in given:
                continue
            settings = trained.module.get(kind)
            if not isinstance(settings, Mapping):
                raise BadSetting(f"it records no {kind}")
            arguments[kind] = torch_optim_config(kind, settings)
        lightning_settings = trained.module.get("lr_scheduler")
        if "lr_scheduler" not in given and isinstance(lightning_settings, Mapping):
            arguments["lr_scheduler"] = scheduler_settings(
                **keyword_arguments(scheduler_settings, lightning_settings, "lr_scheduler setting")
            )
        rest = {
            key: value
            for key, value in trained.module.items()
            if key in accepted and key not in (*arguments, "optimizer", "scheduler", "lr_scheduler", *given)
        }
        arguments |= keyword_arguments(init, rest, "module setting")
    except BadSetting as bad:
        raise CheckpointError(
            f"{trained.source}: {bad}; nothing was built (pass that argument to load_from_checkpoint yourself)"
        ) from None
    return arguments
