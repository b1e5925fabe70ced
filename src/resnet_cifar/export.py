"""Export a trained network the way the field shares them: weights, settings and a model card.

    resnet-cifar-export outputs/runs/<date_time>/checkpoints/last.ckpt resnet20-cifar10/
    python -m resnet_cifar.export CKPT DIR [--data-root PATH]

DIR then holds ``model.safetensors`` (the network's weights and the mean image it subtracts from
its inputs), ``config.json`` (its settings) and ``README.md`` (its model card: the network, its
test error on which data and after how many steps, the recipe where it differs from the paper's,
and what trained it), the layout of a Hugging Face Hub model repository. Anyone loads it with
``resnet_cifar.models.load_pretrained(DIR)``: no pickle, no code named by a file, no Lightning.
``huggingface_hub.upload_folder(repo_id="you/resnet20-cifar10", folder_path=DIR)`` publishes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from resnet_cifar.allowed_networks import project_networks
from resnet_cifar.errors import exit_status
from resnet_cifar.models.pretrained import PAPER_ARCHITECTURE, save_pretrained
from resnet_cifar.report.model_card import model_card, run_of
from resnet_cifar.training.checkpoints import Trained, data_arguments, network_settings, read_trained

# Of a run's data settings, those that say which images and split it was trained on.
DATA_KEYS = ("dataset", "num_classes", "val_size", "split_seed", "synthetic_sizes")


def training_mean_image(trained: Trained, run_path: Path | None, data_root: str | None) -> Any:
    """The mean image of the training split: the checkpoint's, or computed from the run's data."""
    if trained.mean_image is not None and data_root is None:
        return trained.mean_image
    from resnet_cifar.data import CIFARDataModule
    from resnet_cifar.report.runs import read_only_data

    data = data_arguments(trained)
    data = read_only_data(data, run_path) if run_path is not None else {**data, "download": False, "cache": False}
    if data_root is not None:
        data["root"] = data_root
    datamodule = CIFARDataModule(**data)
    datamodule.setup("fit")
    return datamodule.mean_image


def export(ckpt_path: str | Path, folder: str | Path, data_root: str | None = None) -> Path:
    """Write the network of ``ckpt_path`` (a checkpoint of resnet-cifar's train) to ``folder``."""
    trained = read_trained(ckpt_path)
    settings = network_settings(trained)
    target = settings.pop("_target_", None)
    architecture = PAPER_ARCHITECTURE if target in project_networks() else str(target)
    run = run_of(Path(ckpt_path))
    mean_image = training_mean_image(trained, run.path if run else None, data_root)
    data = {key: value for key, value in data_arguments(trained).items() if key in DATA_KEYS}
    card = model_card(Path(ckpt_path), trained, architecture, settings, data, run)
    return save_pretrained(folder, trained.network_weights, mean_image, settings, architecture, data, card)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="resnet-cifar-export",
        description="Write a trained network as model.safetensors, config.json and a model card (README.md).",
    )
    parser.add_argument("ckpt", metavar="CKPT", help="a checkpoint of resnet-cifar's train (a run's last.ckpt)")
    parser.add_argument("dir", metavar="DIR", help="the folder to write (created if needed)")
    parser.add_argument(
        "--data-root",
        help="where the run's data is, for a checkpoint that does not record its mean image (older runs)",
    )
    args = parser.parse_args(argv)
    return exit_status(lambda: f"exported: {export(args.ckpt, args.dir, args.data_root)}", args.dir)


if __name__ == "__main__":
    sys.exit(main())
