"""The pruner config stored in a study (a database anyone with access may write) builds only
Optuna's pruners."""

from __future__ import annotations

import pytest

from resnet_cifar.errors import ConfigError
from resnet_cifar.search.reporting import check_pruner_targets


def test_optunas_pruners_are_allowed() -> None:
    check_pruner_targets({"_target_": "optuna.pruners.MedianPruner", "n_warmup_steps": 2})
    check_pruner_targets({"_target_": "optuna.pruners.PatientPruner", "wrapped_pruner": None, "patience": 1})


@pytest.mark.parametrize(
    "target",
    [
        "os.system",
        "optuna.pruners._percentile.np.load",  # numpy's load (allow_pickle=...), imported by a pruner's module
        "optuna.pruners._percentile.np.save",
        "optuna.pruners.MedianPruner.__init__.__globals__",
    ],
)
def test_what_optuna_pruners_only_reaches_by_name_is_refused(target: str) -> None:
    with pytest.raises(ConfigError, match="is not one of Optuna's"):
        check_pruner_targets({"_target_": "optuna.pruners.PatientPruner", "wrapped_pruner": {"_target_": target}})


def test_an_interpolation_in_the_pruner_config_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"interpolation at n_warmup_steps"):
        check_pruner_targets({"_target_": "optuna.pruners.MedianPruner", "n_warmup_steps": "${oc.env:HOME}"})
