"""A run's folder: whether an existing one is this command's run, and what the run leaves there.

A folder that holds a run (``.hydra/config.yaml``) answers only for the config it was run with:
rerunning the same command there resumes an interrupted run or returns a finished one's results,
while a command with another config is refused, naming the keys that differ, before anything in
the folder changes. A resume may change only what does not change what is computed (the keys of
RESUMABLE: more steps, where the data lies, the devices it runs on, trackers and progress display).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from resnet_cifar.errors import ConfigError
from resnet_cifar.files import atomic_write
from resnet_cifar.received_files import UnreadableFile, read_json, read_yaml
from resnet_cifar.training.build import METRICS_FILE
from resnet_cifar.typed_settings import AS_WRITTEN, resolve_references, shown

CONFIG_FILE = Path(".hydra") / "config.yaml"
# Config keys (and the keys below them) that may differ when a run is resumed in its folder.
RESUMABLE = (
    "trainer.max_steps",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "ckpt_path",
    "trusted_targets",
    "optimized_metric",
    "data.root",
    "data.download",
    "data.cache",
    "logger",
    "callbacks.progress_bar",
    "site",
)
SHOWN_DIFFERENCES = 6

log = logging.getLogger(__name__)


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """``ckpt_path`` if given, else this run directory's last.ckpt if an earlier attempt left one."""
    if cfg.ckpt_path:
        return str(cfg.ckpt_path)
    last = Path(cfg.paths.last_checkpoint)
    return str(last) if last.is_file() else None


def config_to_save(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as .hydra/config.yaml keeps it: Hydra's form (interpolations kept), with
    the precision the run trains in rather than the resolver that chose it (read on another
    machine, the report on a CPU, ${default_precision:...} would answer for that machine)."""
    saved = cfg.copy()
    with open_dict(saved):
        saved.trainer.precision = cfg.trainer.precision
    return OmegaConf.to_container(saved, resolve=False)


def flattened(node: Any, key: str = "") -> dict[str, Any]:
    """``{"data.root": "data", ...}`` of a plain config (lists are values)."""
    if not isinstance(node, dict) or not node:
        return {key: node}
    found: dict[str, Any] = {}
    for name, value in node.items():
        found |= flattened(value, f"{key}.{name}" if key else str(name))
    return found


def resumable(key: str) -> bool:
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE)


def check_same_config(cfg: DictConfig, output_dir: Path) -> None:
    """Refuse to run in ``output_dir`` when it holds the run of another config (see the module)."""
    path = output_dir / CONFIG_FILE
    if not path.exists():
        return
    try:
        saved = flattened(resolve_references(read_yaml(path), unresolved=AS_WRITTEN))
    except UnreadableFile as error:
        raise ConfigError(
            f"{output_dir} holds a run whose config cannot be read ({error}); choose another folder "
            "(leave out hydra.run.dir, or hydra.run.dir=<a new folder>)"
        ) from None
    # Compared as values: a reference (${data.num_classes}) equals the value it names.
    new = flattened(resolve_references(config_to_save(cfg), unresolved=AS_WRITTEN))
    absent = object()
    differing = [
        key
        for key in sorted(set(saved) | set(new))
        if saved.get(key, absent) != new.get(key, absent) and not resumable(key)
    ]
    if not differing:
        return
    value = lambda config, key: "not set" if key not in config else shown(config[key], 40)  # noqa: E731
    shown_keys = ", ".join(
        f"{key}: {value(saved, key)} there, {value(new, key)} here" for key in differing[:SHOWN_DIFFERENCES]
    )
    more = f" and {len(differing) - SHOWN_DIFFERENCES} more" if len(differing) > SHOWN_DIFFERENCES else ""
    raise ConfigError(
        f"{output_dir} holds the run of another config ({shown_keys}{more}); nothing there was changed. "
        f"To continue that run, give its own settings (its {CONFIG_FILE.parent}/overrides.yaml); to train "
        "this config, choose another folder (leave out hydra.run.dir, or hydra.run.dir=<a new folder>)"
    )


def finished_run_metrics(output_dir: Path, checkpoint_step: int, max_steps: int) -> dict[str, Any] | None:
    """This directory's results if its checkpoint shows its run reached ``max_steps``, else None.

    Rerunning a finished run's command (say a whole sweep after one job crashed) must keep its
    results: a fit of zero steps would overwrite metrics.json with empty training metrics.
    """
    metrics_path = output_dir / METRICS_FILE
    if not metrics_path.is_file() or not 0 < max_steps <= checkpoint_step:
        return None
    log.info("this run finished already (%d steps); its results are in %s", checkpoint_step, metrics_path)
    return read_json(metrics_path)


@rank_zero_only
def save_composed_config(cfg: DictConfig, output_dir: Path) -> None:
    """Write .hydra/ as Hydra would, but only once the run is accepted.

    Hydra's own copy (hydra.output_subdir, off in train.yaml) is written before the task
    starts, so a command refused here would overwrite the config of the finished run beside it.
    """
    hydra = HydraConfig.get()
    config_dir = output_dir / CONFIG_FILE.parent
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (
        ("config.yaml", config_to_save(cfg)),
        ("hydra.yaml", hydra),
        ("overrides.yaml", list(hydra.overrides.task)),
    ):
        with atomic_write(config_dir / name) as temporary:
            OmegaConf.save(content, temporary)
