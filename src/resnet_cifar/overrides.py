"""Command-line overrides checked for what Hydra would end in a traceback, before Hydra composes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from resnet_cifar import CONFIG_DIR
from resnet_cifar.errors import ConfigError


def config_groups(config_dir: Path = CONFIG_DIR) -> set[str]:
    """The config groups under ``config_dir``, as overrides name them (``logger``, ``hydra/launcher``)."""
    return {path.relative_to(config_dir).as_posix() for path in config_dir.rglob("*") if path.is_dir()}


def parsed(argument: str) -> Override | None:
    """The override Hydra reads from a command-line ``argument``; None for an option (``-m``) and
    for what Hydra cannot parse (Hydra's own error will say what is wrong with it)."""
    if argument.startswith("-"):
        return None
    try:
        (override,) = OverridesParser.create().parse_overrides([argument])
    except HydraException:
        return None
    return override


def refuse_null_groups(arguments: Sequence[str]) -> None:
    """A config group set to null (``logger=null``) is refused with the override that leaves it
    out: Hydra's own answer is a ValueError with a traceback that names no option."""
    groups = config_groups()
    for argument in arguments:
        override = parsed(argument)
        if override is None or override.key_or_group not in groups:
            continue
        if override.is_delete() or override.is_sweep_override():
            continue
        if override.value() is None:
            group = override.key_or_group
            raise ConfigError(
                f"{argument}: {group} is a config group, which Hydra cannot set to null; "
                f"leave it out with '~{group}' (Hydra's delete), or choose one of conf/{group}/"
            )
