"""conf/hydra/sweeper/: every sampler and pruner composes with hparams_search=lr_wd and builds
Optuna's object; lr_wd.yaml's trial plumbing is in place, the pruner reaching each trial's run
from the command's own config; the group names of earlier versions still work, with a warning."""

from __future__ import annotations

import optuna
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from resnet_cifar import CONFIG_DIR
from resnet_cifar.errors import ConfigError
from resnet_cifar.train import check_optimized_metric, compose_config

SWEEPER = CONFIG_DIR / "hydra" / "sweeper"
SAMPLERS = sorted(path.stem for path in (SWEEPER / "optuna_sampler").glob("*.yaml"))
PRUNERS = sorted(path.stem for path in (SWEEPER / "optuna_pruner").glob("*.yaml"))


def test_the_shipped_samplers_and_pruners() -> None:
    assert (SAMPLERS, PRUNERS) == (["random", "tpe"], ["hyperband", "median", "percentile", "successive_halving"])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_builds(sampler: str) -> None:
    compose_config(["hparams_search=lr_wd", f"hydra/sweeper/optuna_sampler={sampler}"])
    assert isinstance(instantiate(HydraConfig.get().sweeper.sampler), optuna.samplers.BaseSampler)


@pytest.mark.parametrize("pruner", PRUNERS)
def test_each_pruner_builds_in_the_runs_callback(pruner: str) -> None:
    cfg = compose_config(["hparams_search=lr_wd", f"hydra/sweeper/optuna_pruner={pruner}"])
    assert isinstance(instantiate(HydraConfig.get().sweeper.pruner), optuna.pruners.BasePruner)
    callback = instantiate(cfg.callbacks.report_to_study)
    assert isinstance(callback.pruner, type(instantiate(HydraConfig.get().sweeper.pruner)))


def test_lr_wd_searches_on_val_error_without_pruning() -> None:
    cfg = compose_config(["hparams_search=lr_wd"])
    sweeper = HydraConfig.get().sweeper
    assert sweeper._target_ == "hydra_plugins.resnet_cifar.optuna_study_sweeper.OptunaStudySweeper"
    assert (sweeper.direction, sweeper.n_trials, sweeper.n_jobs, sweeper.storage) == ("minimize", 20, 1, None)
    assert dict(sweeper.params) == {
        "optimizer.lr": "tag(log, interval(0.01, 0.5))",
        "optimizer.weight_decay": "tag(log, interval(1e-5, 1e-3))",
    }
    assert "pruner" not in sweeper and sweeper.sampler.seed == 0
    assert cfg.optimized_metric == "val_err"
    assert cfg.callbacks.report_to_study.trial is None  # a run that is not a trial reports nothing
    assert cfg.callbacks.report_to_study.pruner is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("hydra/sweeper/pruner=median", "hydra/sweeper/optuna_pruner=median"),
        ("hydra/sweeper/sampler=random", "hydra/sweeper/optuna_sampler=random"),
        ("hydra/sweeper=optuna", "hydra/sweeper=optuna_study"),
    ],
)
def test_a_group_of_earlier_versions_works_with_one_warning(old: str, new: str, capsys: pytest.CaptureFixture) -> None:
    compose_config(["hparams_search=lr_wd", old])
    by_old_name = HydraConfig.get().sweeper
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {old} is now {new}; the old name will stop working in a future release"
    ]
    compose_config(["hparams_search=lr_wd", new])
    assert by_old_name == HydraConfig.get().sweeper and capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("overrides", "offered"),
    [
        (("hydra.mode=MULTIRUN", "hparams_search=lr_wd"), "val_err, val_loss, train_err, train_loss, steps, wall_s"),
        (("hydra.mode=MULTIRUN", "hparams_search=lr_wd", "data.val_size=0"), "train_err, train_loss, steps, wall_s"),
        ((), "test_err, test_loss, test_err_best_val, val_err, val_loss, train_err, train_loss, steps, wall_s"),
    ],
    ids=["search", "search-without-validation", "single-run"],
)
def test_an_unknown_metric_is_answered_with_what_may_be_optimised(overrides: tuple[str, ...], offered: str) -> None:
    """A search offers none of the test set's numbers (which it refuses), nor, without a validation
    split, the validation's; a single run may return any number of metrics.json."""
    with pytest.raises(ConfigError) as raised:
        check_optimized_metric(compose_config([*overrides, "optimized_metric=nonsense"]))
    assert str(raised.value).startswith("optimized_metric=nonsense is not a number in metrics.json; ")
    assert str(raised.value).endswith(f"one of {offered}, images_per_s")
