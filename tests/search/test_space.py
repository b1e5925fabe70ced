"""The search space: Hydra's sweep syntax as Optuna distributions, and a trial's values written
back as overrides that Hydra reads as the same values."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from resnet_cifar.errors import ConfigError
from resnet_cifar.search.space import override_value, search_space, trial_overrides


def test_lr_wd_params_become_log_scale_float_distributions():
    space = search_space(
        {"optimizer.lr": "tag(log, interval(0.01, 0.5))", "optimizer.weight_decay": "tag(log, interval(1e-5, 1e-3))"},
        [],
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(0.01, 0.5, log=True),
        "optimizer.weight_decay": FloatDistribution(1e-5, 1e-3, log=True),
    }
    assert space.fixed == []


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("interval(0.1, 0.9)", FloatDistribution(0.1, 0.9)),
        ("int(interval(1, 5))", IntDistribution(1, 5)),
        ("tag(log, int(interval(16, 512)))", IntDistribution(16, 512, log=True)),
        ("range(20, 60, 12)", IntDistribution(20, 56, step=12)),  # 20, 32, 44, 56: range's end is left out
        ("choice(A, B)", CategoricalDistribution(["A", "B"])),
        ("20,56", CategoricalDistribution([20, 56])),
        ("range(0.5, 2.0, 0.5)", CategoricalDistribution([0.5, 1.0, 1.5])),  # the values Hydra lists
    ],
)
def test_each_sweep_form_is_its_optuna_distribution(expression, expected):
    assert search_space({"key": expression}, []).distributions == {"key": expected}


def test_sweeps_join_the_space_other_overrides_stay_fixed():
    space = search_space(
        {"optimizer.lr": "interval(0.01, 0.5)"},
        ["hparams_search=lr_wd", "model.depth=20,56", "trainer.max_steps=3", "optimizer.lr=0.1"],
    )
    assert space.distributions == {"model.depth": CategoricalDistribution([20, 56])}
    assert space.fixed == ["hparams_search=lr_wd", "trainer.max_steps=3", "optimizer.lr=0.1"]
    assert space.fixed_keys == ["hparams_search", "trainer.max_steps", "optimizer.lr"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("tag(log, interval(0, 1))", "optimizer.lr: a log-scale interval needs a start above 0"),
        ("range(5, 1)", "optimizer.lr: range(5, 1, 1) is empty"),
        ("interval(0.1", "hydra.sweeper.params:"),
    ],
)
def test_a_space_optuna_cannot_draw_from_is_refused(expression, message):
    with pytest.raises(ConfigError, match=r"^" + message.replace("(", r"\(").replace(")", r"\)")):
        search_space({"optimizer.lr": expression}, [])


@pytest.mark.parametrize(
    "value", [0.1, 1e-05, 3, True, False, None, "A", "x y", "it's", "1e-3", "true", "sqlite:////tmp/a b/o.db"]
)
def test_a_value_written_as_an_override_reads_back_the_same(value):
    override = OverridesParser.create().parse_overrides([f"key={override_value(value)}"])[0]
    assert override.value() == value and type(override.value()) is type(value)


def test_trial_overrides_keep_the_parameters_order():
    assert trial_overrides({"optimizer.lr": 0.05, "model.shortcut": "B"}) == ["optimizer.lr=0.05", "model.shortcut=B"]
