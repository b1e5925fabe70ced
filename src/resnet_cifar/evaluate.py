"""Test a checkpoint on the test set; print and save its error and loss.

    python -m resnet_cifar.evaluate ckpt_path=outputs/runs/.../checkpoints/last.ckpt [data.root=...]

The results go to ``<checkpoint>.eval.json`` beside the checkpoint (``last.eval.json``).
"""

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

from resnet_cifar import CONFIG_DIR
from resnet_cifar.cli import exit_on_usage_error
from resnet_cifar.files import write_json_atomically
from resnet_cifar.provenance import run_environment
from resnet_cifar.resolvers import register_resolvers
from resnet_cifar.training.build import build_datamodule, build_module, build_trainer, metric
from resnet_cifar.training.checkpoints import (
    check_checkpoint_targets,
    check_same_model,
    checkpoint_config,
    read_checkpoint,
)
from resnet_cifar.training.quiet import silence_known_noise
from resnet_cifar.trusted_targets import TrustedTargets

log = logging.getLogger(__name__)

# Evaluation runs in one process and logs nowhere, whatever the training run did.
SINGLE_PROCESS = {"trainer": {"devices": 1, "num_nodes": 1, "strategy": "auto"}, "logger": None, "callbacks": None}
# A checkpoint's config does not decide to download into its data.root: this site's settings or
# the command line may (data.download=true).
NO_DOWNLOAD = {"data": {"download": False}}


def site_settings() -> dict[str, Any]:
    """This site's settings (conf/local/default.yaml, or the ``local=...`` chosen), if there are any:
    a checkpoint trained elsewhere is evaluated with this site's data.root."""
    choice = HydraConfig.get().runtime.choices.get("local")
    if not choice:
        return {}
    try:
        site = compose(config_name=f"local/{choice}")
    except MissingConfigException:  # the optional file does not exist
        return {}
    return OmegaConf.to_container(site)


def evaluation_config(saved: dict[str, Any], overrides: list[str], site: dict[str, Any] | None = None) -> DictConfig:
    """The checkpoint's run config, with this site's settings and then the command line's overrides on top."""
    user = [override for override in overrides if not override.startswith("ckpt_path=")]
    return OmegaConf.merge(saved, NO_DOWNLOAD, site or {}, OmegaConf.from_dotlist(user), SINGLE_PROCESS)


def evaluate(
    ckpt_path: str, overrides: list[str], site: dict[str, Any] | None = None, trusted: TrustedTargets | None = None
) -> dict[str, Any]:
    """Test the checkpoint at ``ckpt_path`` with its run config, ``site``'s settings and ``overrides``
    on top; write and return its results. The checkpoint's configs may name only targets that
    ``trusted`` allows (by default the project's, torch's and Lightning's, and
    RESNET_CIFAR_TRUSTED_TARGETS): anything else raises UntrustedConfig before anything is built."""
    checkpoint = read_checkpoint(ckpt_path)
    check_checkpoint_targets(checkpoint, ckpt_path, trusted or TrustedTargets.default())
    cfg = evaluation_config(checkpoint_config(checkpoint, ckpt_path), overrides, site)
    check_same_model(checkpoint, ckpt_path, OmegaConf.to_container(cfg.model, resolve=True))
    module = build_module(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    trainer = build_trainer(cfg)
    results = trainer.test(module, datamodule=build_datamodule(cfg), verbose=False)[0]
    evaluation = {
        "ckpt_path": str(Path(ckpt_path).resolve()),
        "step": checkpoint.get("global_step"),
        "test_err": metric(results, "test/err"),
        "test_loss": metric(results, "test/loss"),
        "environment": run_environment(trainer),  # what this evaluation ran on, as metrics.json's
    }
    output = Path(ckpt_path).with_suffix(".eval.json")
    write_json_atomically(output, evaluation)
    print(f"test error {evaluation['test_err']:.2f} %  test loss {evaluation['test_loss']:.4f}  ({output})")
    return evaluation


register_resolvers()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
@exit_on_usage_error
def main(cfg: DictConfig) -> None:
    silence_known_noise()
    overrides = list(HydraConfig.get().overrides.task)
    evaluate(cfg.ckpt_path, overrides, site_settings(), TrustedTargets.of_command(cfg))


if __name__ == "__main__":
    main()
