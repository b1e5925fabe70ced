"""conf/hydra/sweeper/: every sampler and pruner composes with hparams_search=lr_wd and builds
Optuna's object; lr_wd.yaml's trial plumbing is in place."""

from __future__ import annotations

import optuna
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from resnet_cifar import CONFIG_DIR
from resnet_cifar.train import compose_config

SAMPLERS = sorted(path.stem for path in (CONFIG_DIR / "hydra" / "sweeper" / "sampler").glob("*.yaml"))
PRUNERS = sorted(path.stem for path in (CONFIG_DIR / "hydra" / "sweeper" / "pruner").glob("*.yaml"))


def test_the_shipped_samplers_and_pruners() -> None:
    assert (SAMPLERS, PRUNERS) == (["random", "tpe"], ["hyperband", "median", "percentile", "successive_halving"])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_builds(sampler: str) -> None:
    compose_config(["hparams_search=lr_wd", f"hydra/sweeper/sampler={sampler}"])
    assert isinstance(instantiate(HydraConfig.get().sweeper.sampler), optuna.samplers.BaseSampler)


@pytest.mark.parametrize("pruner", PRUNERS)
def test_each_pruner_builds(pruner: str) -> None:
    compose_config(["hparams_search=lr_wd", f"hydra/sweeper/pruner={pruner}"])
    assert isinstance(instantiate(HydraConfig.get().sweeper.pruner), optuna.pruners.BasePruner)


def test_lr_wd_searches_on_val_error_without_pruning() -> None:
    cfg = compose_config(["hparams_search=lr_wd"])
    sweeper = HydraConfig.get().sweeper
    assert sweeper._target_ == "hydra_plugins.resnet_cifar.optuna_sweeper.OptunaSweeper"
    assert (sweeper.direction, sweeper.n_trials, sweeper.n_jobs, sweeper.storage) == ("minimize", 20, 1, None)
    assert dict(sweeper.params) == {
        "optimizer.lr": "tag(log, interval(0.01, 0.5))",
        "optimizer.weight_decay": "tag(log, interval(1e-5, 1e-3))",
    }
    assert "pruner" not in sweeper and sweeper.sampler.seed == 0
    assert cfg.optimized_metric == "val_err"
    assert cfg.callbacks.report_to_study.trial is None  # a run that is not a trial reports nothing
