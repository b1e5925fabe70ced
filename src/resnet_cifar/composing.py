"""Composing a command's config from Python, as the command line composes it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from resnet_cifar import CONFIG_DIR
from resnet_cifar.resolvers import register_resolvers

# The run folders that compose_command gave out in this process: two configs composed in the same
# second (hydra.run.dir names folders after the second) still get a folder each.
HANDED_OUT: set[Path] = set()


def folder_of_its_own(folder: Path) -> Path:
    """``folder``, or ``<folder>_2``, ``_3``... where it exists or was given out already."""
    candidate, number = folder, 1
    while candidate.exists() or candidate in HANDED_OUT:
        number += 1
        candidate = folder.with_name(f"{folder.name}_{number}")
    HANDED_OUT.add(candidate)
    return candidate


def compose_command(
    config_name: str, overrides: Sequence[str] = (), output_dir: str | Path | None = None, new_folder: bool = False
) -> DictConfig:
    """conf/<config_name>.yaml composed with ``overrides``; the run writes to ``output_dir`` (by
    default ``hydra.run.dir``, made a folder of its own with ``new_folder``). Hydra's settings of
    the run (its output directory, its overrides, the config choices) become the process's current
    Hydra config, as in a command."""
    register_resolvers()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3", job_name=config_name):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    folder = Path(output_dir or cfg.hydra.run.dir).absolute()
    with read_write(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(folder_of_its_own(folder) if new_folder and not output_dir else folder)
    HydraConfig.instance().set_config(cfg)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def compose_option(name: str) -> dict[str, Any]:
    """The config of one option of a group (``local/default``) as the command composes it, from
    its search path inside a command, from conf/ otherwise; {} where the optional file is absent."""
    try:
        if GlobalHydra.instance().is_initialized():
            return OmegaConf.to_container(compose(config_name=name))
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return OmegaConf.to_container(compose(config_name=name))
    except MissingConfigException:
        return {}
