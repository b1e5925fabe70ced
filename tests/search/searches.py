"""Searches as a user runs them (``python -m resnet_cifar.train -m hparams_search=lr_wd``), on
tiny runs, and what they leave behind: the study, read back with Optuna's own API, the trial
folders and optimization_results.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import yaml
from optuna.distributions import FloatDistribution

from tiny_runs import TINY_SYNTHETIC_RUN

# Validation after every second step; a search of two such trials takes about 20 s.
TRIAL = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=6", "trainer.val_check_interval=2", "~callbacks.input_preview")
LR_WD = {
    "optimizer.lr": FloatDistribution(0.01, 0.5, log=True),
    "optimizer.weight_decay": FloatDistribution(1e-5, 1e-3, log=True),
}


def search_command(sweep_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        "-m",
        "hparams_search=lr_wd",
        *TRIAL,
        f"hydra.sweep.dir={sweep_dir}",
        *overrides,
    ]


def load_study(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="lr_wd", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def trial_dirs(sweep_dir: Path) -> list[Path]:
    """The trial folders (``<number>_<values>``), in the order of their trial numbers."""
    return sorted(
        (path for path in sweep_dir.iterdir() if path.is_dir()), key=lambda path: int(path.name.split("_")[0])
    )


def results(sweep_dir: Path) -> dict:
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
