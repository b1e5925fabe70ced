"""TensorBoard's HPARAMS: the recipe's keys and every overridden key, flat, as numbers or text."""

from resnet_cifar.train import compose_config
from resnet_cifar.training.hparams import RECIPE_KEYS, run_hparams

OVERRIDES = [
    "model=plain",
    "experiment=smoke",
    "optimizer.lr=0.05",
    "model.depth=56",
    "~callbacks.input_preview",
    "+tags.note=baseline",
    "scheduler.milestones=[100,150]",
]


def test_recipe_keys_then_every_override_with_its_value() -> None:
    hparams = run_hparams(compose_config(OVERRIDES), OVERRIDES)
    assert list(hparams) == [*RECIPE_KEYS, "model", "experiment", "callbacks.input_preview", "tags.note"]
    assert hparams["model"] == "plain" and hparams["experiment"] == "smoke"  # groups: the option chosen
    assert hparams["model.residual"] == "false"  # as typed on the command line, not 0.0
    assert hparams["model.depth"] == 56 and hparams["optimizer.lr"] == 0.05
    assert hparams["scheduler.milestones"] == "[100, 150]"
    assert hparams["data.dataset"] == "synthetic" and hparams["trainer.max_steps"] == 20  # from experiment=smoke
    assert hparams["callbacks.input_preview"] == "(removed)" and hparams["tags.note"] == "baseline"
    assert all(isinstance(value, (int, float, str)) and not isinstance(value, bool) for value in hparams.values())


def test_without_overrides_the_short_set_alone() -> None:
    hparams = run_hparams(compose_config(), [])
    assert list(hparams) == list(RECIPE_KEYS)
    assert hparams["trainer.devices"] == 1 and hparams["trainer.precision"] == "32-true"
