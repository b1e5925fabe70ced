"""The search space: Hydra's sweep syntax as Optuna distributions, and a trial's values written
back as overrides that Hydra reads as the same values."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from resnet_cifar.errors import ConfigError
from resnet_cifar.search.space import (
    OutsideSpace,
    override_value,
    params_in_space,
    search_space,
    trial_name,
    trial_overrides,
)


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


def test_a_trials_folder_name_is_its_number_and_values_to_three_digits():
    params = {"optimizer.lr": 0.08558894657793088, "optimizer.weight_decay": 1.2345e-05}
    params |= {"seed": 3, "model.shortcut": "B"}
    assert trial_name(7, params) == "7_optimizer.lr=0.0856,optimizer.weight_decay=1.23e-05,seed=3,model.shortcut=B"
    assert trial_name(8, {"model.residual": False, "optimizer.lr": 0.1}) == "8_model.residual=false,optimizer.lr=0.1"


SPACE = {
    "optimizer.lr": "tag(log, interval(0.01, 0.5))",
    "model.depth": "choice(20, 56)",
    "seed": "range(0, 10, 3)",  # 0, 3, 6, 9
    "model.shortcut": "choice(A, B)",
}


def test_a_trial_read_back_is_rebuilt_in_the_spaces_order():
    space = search_space(SPACE, [])
    read_back = {"model.shortcut": "B", "seed": 9, "model.depth": 56, "optimizer.lr": 0.5}
    rebuilt = params_in_space(space, read_back)
    assert rebuilt == read_back and list(rebuilt) == list(SPACE)
    assert params_in_space(space, {"seed": 3}, complete=False) == {"seed": 3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer.lr=0.1 +callbacks.x._target_=builtins.open": 0.1}, "its parameter 'optimizer.lr=0.1 +callbacks"),
        ({"hydra.sweep.dir": "/elsewhere"}, "its parameter 'hydra.sweep.dir' is not one of this search's"),
        ({"optimizer.lr": 0.6}, "its optimizer.lr=0.6 is outside this search's FloatDistribution"),
        ({"optimizer.lr": float("nan")}, "its optimizer.lr=nan is outside"),
        ({"optimizer.lr": "0.1"}, "its optimizer.lr='0.1' is outside"),
        ({"model.depth": "20 +callbacks.x._target_=os.system"}, "its model.depth='20 +callbacks.x._target_=os.system'"),
        ({"model.depth": 32}, "its model.depth=32 is outside this search's CategoricalDistribution"),
        ({"model.depth": 20.0}, "its model.depth=20.0 is outside"),  # a float is not the choice 20
        ({"seed": 4}, "its seed=4 is outside this search's IntDistribution"),  # not on the range's step
        ({"seed": True}, "its seed=True is outside"),
        ({"model.shortcut": "C"}, "its model.shortcut='C' is outside"),
    ],
)
def test_a_trial_that_does_not_fit_the_space_is_refused(change, message):
    space = search_space(SPACE, [])
    read_back = {"optimizer.lr": 0.1, "model.depth": 20, "seed": 3, "model.shortcut": "A"} | change
    with pytest.raises(OutsideSpace) as refused:
        params_in_space(space, read_back)
    assert str(refused.value).startswith(message)


def test_a_trial_to_run_again_needs_every_parameter_of_the_space():
    with pytest.raises(OutsideSpace, match="^it has no value of model.depth$"):
        params_in_space(search_space(SPACE, []), {"optimizer.lr": 0.1, "seed": 3, "model.shortcut": "A"})


def test_a_long_name_read_back_is_cut_in_the_message():
    with pytest.raises(OutsideSpace) as refused:
        params_in_space(search_space(SPACE, []), {"x" * 10_000: 1.0}, complete=False)
    assert len(str(refused.value)) < 200
