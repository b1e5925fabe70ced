"""Test a trained network on the test set; print and save its error and loss.

    python -m resnet_cifar.evaluate ckpt_path=outputs/runs/.../checkpoints/last.ckpt [data.root=...]
    python -m resnet_cifar.evaluate ckpt_path=resnet20-cifar10/     # a folder of resnet-cifar-export

The checkpoint gives the network (its settings and weights) and the data settings it was trained
with; everything else (the Trainer, its precision and device, the module) comes from this
command's own config, this site's settings and the command line, never from the file. Data
settings given here (``data.root=...``, or ``data.root`` in this site's settings) replace the
checkpoint's; a data folder that only the checkpoint names is read, never written to.

The results go to ``<checkpoint>.eval.json`` beside the checkpoint (``last.eval.json``), or
``<folder>.eval.json`` beside an exported folder.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from resnet_cifar import CONFIG_DIR
from resnet_cifar.allowed_networks import AllowedNetworks, build_network
from resnet_cifar.cli import exit_on_usage_error, raises_usage_errors
from resnet_cifar.composing import compose_command, compose_option
from resnet_cifar.data import CIFARDataModule
from resnet_cifar.errors import CheckpointError, ConfigError
from resnet_cifar.files import write_json_atomically
from resnet_cifar.provenance import run_environment, running_code
from resnet_cifar.resolvers import register_resolvers
from resnet_cifar.training.build import build_module, build_trainer, metric
from resnet_cifar.training.checkpoints import Trained, data_arguments, network_settings, read_trained
from resnet_cifar.training.quiet import silence_known_noise

log = logging.getLogger(__name__)

# Evaluation runs in one process and logs nowhere, whatever the training run did.
SINGLE_PROCESS = {"trainer": {"devices": 1, "num_nodes": 1, "strategy": "auto"}, "logger": None, "callbacks": None}
# What the data module does on this machine is this command's choice, not the file's.
COMMANDS_OWN_DATA = ("download", "cache")


def compose_evaluation(overrides: Sequence[str]) -> DictConfig:
    """conf/evaluate.yaml composed with ``overrides`` (``ckpt_path=...`` among them), as
    ``python -m resnet_cifar.evaluate`` composes it, for :func:`evaluate` called from Python."""
    return compose_command("evaluate", overrides)


def keys_set_here(group: str) -> set[str]:
    """The keys of ``group`` (data, model) that this site's settings or the command line set;
    ``{"*"}`` where the command line chose the group's option (``data=cifar100``)."""
    keys: set[str] = set()
    choice = HydraConfig.get().runtime.choices.get("local")
    if choice:
        keys |= set((compose_option(f"local/{choice}").get(group) or {}).keys())
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == group:
            return {"*"}
        if key.startswith(f"{group}."):
            keys.add(key.split(".")[1])
    return keys


def check_model_settings(trained: Trained, cfg: DictConfig) -> None:
    """Refuse model settings given here that the checkpoint's network does not have: evaluate takes
    the network from the checkpoint, and would otherwise test another one than the user asked for."""
    keys = keys_set_here("model")
    if not keys:
        return
    own = OmegaConf.to_container(cfg.model, resolve=True)
    recorded = network_settings(trained)
    differing = [key for key in (own if "*" in keys else keys) if own.get(key) != recorded.get(key)]
    if differing:
        raise CheckpointError(
            f"{trained.source} holds model ({', '.join(f'{key}={recorded.get(key)}' for key in differing)}) but "
            f"this command sets model ({', '.join(f'{key}={own.get(key)}' for key in differing)}); evaluate takes the "
            "network from the checkpoint: leave out these model settings"
        )


def evaluation_data(trained: Trained, cfg: DictConfig) -> dict[str, Any]:
    """The data module's arguments: the command's, with the checkpoint's recorded settings on top
    where neither this site's settings nor the command line set them."""
    own = {key: value for key, value in OmegaConf.to_container(cfg.data, resolve=True).items() if key != "_target_"}
    set_here = keys_set_here("data")
    if "*" in set_here:
        return own
    recorded = {
        key: value
        for key, value in data_arguments(trained).items()
        if key not in set_here and key not in COMMANDS_OWN_DATA
    }
    if "root" in recorded:  # a folder that a file names is read, never written to
        recorded["cache"] = False
    return own | recorded


def results_path(ckpt_path: str | Path) -> Path:
    path = Path(ckpt_path)
    return path.with_name(path.name + ".eval.json") if path.is_dir() else path.with_suffix(".eval.json")


def checkpoint_to_test(cfg: DictConfig) -> str:
    """``ckpt_path``, which this command cannot do without."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError(
            "ckpt_path is not set: evaluate tests a trained network; name its checkpoint or exported folder, "
            "e.g. python -m resnet_cifar.evaluate ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt"
        )
    return str(cfg.ckpt_path)


@raises_usage_errors
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test the network at ``cfg.ckpt_path`` (a checkpoint or an exported folder) on the data it
    was trained with, with the command's own Trainer and module; write and return its results.
    The file's network must be one of the project's or one allowed (``trusted_targets``,
    RESNET_CIFAR_TRUSTED_TARGETS, the network of ``model=...``): anything else raises
    :class:`~resnet_cifar.errors.UntrustedConfig` before anything is built. A bad setting raises
    :class:`~resnet_cifar.errors.UsageError` (or a subclass), with the message that the command
    prints after ``error:``."""
    ckpt_path = checkpoint_to_test(cfg)
    trained = read_trained(ckpt_path)
    check_model_settings(trained, cfg)
    network = build_network(trained.network, AllowedNetworks.of_command(cfg), trained.source)
    try:
        network.load_state_dict(trained.network_weights)
    except RuntimeError as error:
        reason = " ".join(str(error).split())[:500]
        raise CheckpointError(f"{trained.source}: its weights do not fit its network's settings ({reason})") from None
    data = evaluation_data(trained, cfg)
    with open_dict(cfg):
        own = OmegaConf.merge(cfg, SINGLE_PROCESS)
    module = build_module(own, net=network, num_classes=data["num_classes"])
    trainer = build_trainer(own)
    results = trainer.test(module, datamodule=CIFARDataModule(**data), verbose=False)[0]
    evaluation = {
        "ckpt_path": str(Path(ckpt_path).resolve()),
        "step": trained.step,
        "test_err": metric(results, "test/err"),
        "test_loss": metric(results, "test/loss"),
        "environment": run_environment(trainer),  # what this evaluation ran on, as metrics.json's
    }
    output = results_path(ckpt_path)
    write_json_atomically(output, evaluation)
    print(f"test error {evaluation['test_err']:.2f} %  test loss {evaluation['test_loss']:.4f}  ({output})")
    return evaluation


register_resolvers()
running_code()  # the commit of the code this process imported, before a run can change the checkout


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
@exit_on_usage_error
def main(cfg: DictConfig) -> None:
    silence_known_noise()
    evaluate(cfg)


if __name__ == "__main__":
    main()
