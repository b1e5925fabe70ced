"""Short job names for the study: ``python -m resnet_cifar.launch.study_names OVERRIDES...`` prints the
Hydra override that leaves the overrides all jobs share out of the job directory names, so that
multirun.sh's jobs are named ``model.depth=20,model=resnet,seed=0`` whatever else is passed.
"""

import sys

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

# Hydra's command-line options that take a value (e.g. --config-dir with this site's settings).
OPTIONS_WITH_A_VALUE = (
    "--config-dir",
    "-cd",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--cfg",
    "-c",
    "--package",
    "-p",
)


def overrides_only(args: list[str]) -> list[str]:
    """``args`` without Hydra's options (``--config-dir DIR``, ``-m``, ...)."""
    overrides, skip_value = [], False
    for arg in args:
        if skip_value:
            skip_value = False
        elif arg.startswith("-"):
            skip_value = arg in OPTIONS_WITH_A_VALUE
        else:
            overrides.append(arg)
    return overrides


def exclude_shared_keys(overrides: list[str]) -> str:
    """The override that names jobs only after what tells them apart: ``overrides`` that are
    not sweeps (nor Hydra's own) are the same for every job, so they are excluded from the
    names, as ``ckpt_path`` always is. Overrides Hydra cannot parse are left to its error."""
    keys = ["ckpt_path"]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides_only(overrides))
    except HydraException:
        parsed = []
    keys += [o.key_or_group for o in parsed if not (o.is_sweep_override() or o.is_hydra_override())]
    quoted = ",".join(repr(key) for key in dict.fromkeys(keys))
    return f"hydra.job.config.override_dirname.exclude_keys=[{quoted}]"


if __name__ == "__main__":
    print(exclude_shared_keys(sys.argv[1:]))
