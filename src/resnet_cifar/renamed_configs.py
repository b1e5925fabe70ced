"""Config names that changed, still understood on the command line (and by ``compose_config``)
for a while, each with one ``warning:`` line that names the new one.

The project's Ray launcher and Optuna sweeper were ``hydra/launcher=ray`` and
``hydra/sweeper=optuna`` (with ``hydra/sweeper/sampler`` and ``hydra/sweeper/pruner``): the names
of hydra-ray-launcher's and hydra-optuna-sweeper's own configs. Hydra validates a config file
against a plugin's stored schema of the same name (a deprecated automatic match), so where those
plugins are installed the project's configs were refused, or the other plugin's were lost.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from resnet_cifar.overrides import parsed

# Groups renamed as a whole: each option keeps its name.
RENAMED_GROUPS = {
    "hydra/sweeper/sampler": "hydra/sweeper/optuna_sampler",
    "hydra/sweeper/pruner": "hydra/sweeper/optuna_pruner",
}
# Options renamed within their group: (group, old option) -> new option.
RENAMED_OPTIONS = {
    ("hydra/launcher", "ray"): "ray_cluster",
    ("hydra/sweeper", "optuna"): "optuna_study",
}


def current_name(argument: str) -> str:
    """``argument`` (a command-line override) with a renamed group or option under its new name;
    anything else, Hydra's options and what Hydra cannot parse included, as it is."""
    override = parsed(argument)
    if override is None:
        return argument
    group = override.key_or_group
    prefix = argument[: argument.index(group)]  # "", "+", "++" or "~"
    if group in RENAMED_GROUPS:
        return prefix + RENAMED_GROUPS[group] + argument[len(prefix) + len(group) :]
    value = None if override.is_delete() or override.is_sweep_override() else override.value()
    if isinstance(value, str) and (group, value) in RENAMED_OPTIONS:
        return f"{prefix}{group}={RENAMED_OPTIONS[group, value]}"
    return argument


def current_names(arguments: Sequence[str]) -> list[str]:
    """``arguments`` with :func:`current_name` of each; a ``warning:`` line on stderr for each renamed one."""
    renamed = []
    for argument in arguments:
        current = current_name(argument)
        if current != argument:
            print(
                f"warning: {argument} is now {current}; the old name will stop working in a future release",
                file=sys.stderr,
                flush=True,
            )
        renamed.append(current)
    return renamed
