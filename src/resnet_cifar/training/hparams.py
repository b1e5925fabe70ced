"""The hyper-parameters of a run that every tracker gets (TensorBoard's HPARAMS tab, MLflow's
parameters, W&B's config, hparams.yaml): a short, flat set.

The whole run config would bury the columns that tell a sweep's runs apart under dozens of
``callbacks/.../_target_`` and paths. Shown instead: the recipe's keys below, plus every key the
command line overrode (a sweep's own parameters among them), each under its dotted config name.
"""

from collections.abc import Iterable

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

HparamValue = int | float | str
RECIPE_KEYS = (
    "model.depth",
    "model.residual",
    "model.shortcut",
    "seed",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.momentum",
    "data.dataset",
    "data.batch_size",
    "trainer.max_steps",
    "scheduler.milestones",
    "trainer.precision",
    "trainer.devices",
    "trainer.num_nodes",
)
REMOVED = "(removed)"


def overridden(overrides: Iterable[str]) -> dict[str, str]:
    """Each command-line override's key and value as typed: ``model=plain`` gives
    ``{"model": "plain"}``, ``~callbacks.input_preview`` gives ``{"callbacks.input_preview": "(removed)"}``."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {
        override.key_or_group: REMOVED if override.is_delete() else override.get_value_element_as_str()
        for override in parsed
    }


def tensorboard_value(value: object) -> HparamValue:
    """A number or a string, as TensorBoard's HPARAMS shows it: lists as their text, and booleans
    spelled as on the command line (torch's hparams summary would store them as 1.0 and 0.0)."""
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return value
    return "null" if value is None else str(value)


def run_hparams(cfg: DictConfig, overrides: Iterable[str]) -> dict[str, HparamValue]:
    """The recipe's keys and every overridden key, with their values in ``cfg``.

    A config group chosen on the command line (``model=plain``, ``experiment=smoke``) has no
    single value in ``cfg``; it is shown as the option chosen.
    """
    typed = overridden(overrides)
    hparams: dict[str, HparamValue] = {}
    for key in [*RECIPE_KEYS, *(key for key in typed if key not in RECIPE_KEYS)]:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(value, DictConfig) or (value is None and key in typed):
            hparams[key] = typed[key]
        else:
            hparams[key] = tensorboard_value(value)
    return hparams
