"""A training step calls torch's backward and optimizer step directly where Lightning's layers
would add nothing (training/lean_update.py), trains exactly as through them, and goes through
them wherever they have work: a gradient hook, DDP, loss scaling, a module's own backward."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from probes import RecordBatchHooks
from small_fits import assert_same_state, classifier, trained_state

from resnet_cifar.training.hook_dispatch import DispatchOnlyImplementedHooks
from resnet_cifar.training.lean_update import lightning_adds_nothing_to_the_update
from resnet_cifar.training.module import ImageClassifier


class LightningLayerCalls:
    """Counts the calls of Lightning's backward and optimizer step (the layers a lean step skips)."""

    def __init__(self, monkeypatch) -> None:
        self.backward = self.step = 0
        real_backward, real_step = SingleDeviceStrategy.backward, LightningOptimizer.step

        def backward(strategy, *args, **kwargs):
            self.backward += 1
            return real_backward(strategy, *args, **kwargs)

        def step(optimizer, *args, **kwargs):
            self.step += 1
            return real_step(optimizer, *args, **kwargs)

        monkeypatch.setattr(SingleDeviceStrategy, "backward", backward)
        monkeypatch.setattr(LightningOptimizer, "step", step)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_steps_without_lightnings_layers_train_exactly_as_steps_through_them(tmp_path, monkeypatch, precision):
    calls = LightningLayerCalls(monkeypatch)
    lean = trained_state(tmp_path, precision=precision, callbacks=[DispatchOnlyImplementedHooks()])
    assert (calls.backward, calls.step) == (0, 0)

    hooks = RecordBatchHooks(str(tmp_path))  # implements the gradient hooks: steps go through Lightning
    through_lightning = trained_state(tmp_path, precision=precision, callbacks=[hooks, DispatchOnlyImplementedHooks()])
    assert (calls.backward, calls.step) == (9, 9)
    assert len(hooks.gradient_norms) == 9 and min(hooks.gradient_norms) > 0
    assert_same_state(lean, through_lightning)  # bit for bit, BN statistics and momentum included


def a_trainer(strategy=None, precision=None, callbacks=()) -> SimpleNamespace:
    """What the decision reads of a Trainer."""
    return SimpleNamespace(
        strategy=strategy or SingleDeviceStrategy(device="cpu"),
        precision_plugin=precision or Precision(),
        callbacks=list(callbacks),
    )


class OwnBackward(ImageClassifier):
    def backward(self, loss, *args, **kwargs) -> None:
        loss.backward(*args, **kwargs)


class BeforeBackward(ImageClassifier):
    def on_before_backward(self, loss) -> None:
        pass


class EndOfStep(L.Callback):
    def on_train_batch_end(self, *args) -> None:
        pass


class BeforeOptimizerStep(L.Callback):
    def on_before_optimizer_step(self, *args) -> None:
        pass


def test_lightnings_layers_are_skipped_only_where_they_have_nothing_to_do():
    module = classifier()
    assert lightning_adds_nothing_to_the_update(a_trainer(), module)
    assert lightning_adds_nothing_to_the_update(a_trainer(precision=MixedPrecision("bf16-mixed", "cpu")), module)
    assert lightning_adds_nothing_to_the_update(a_trainer(precision=HalfPrecision("bf16-true")), module)
    assert lightning_adds_nothing_to_the_update(a_trainer(callbacks=[L.Callback(), EndOfStep()]), module)

    # Work of their own: DDP's gradient sync preparation, fp16 loss scaling, other precisions.
    assert not lightning_adds_nothing_to_the_update(a_trainer(strategy=DDPStrategy()), module)
    scaled = MixedPrecision("16-mixed", "cuda", scaler=torch.amp.GradScaler("cuda", enabled=False))
    assert not lightning_adds_nothing_to_the_update(a_trainer(precision=scaled), module)
    assert not lightning_adds_nothing_to_the_update(a_trainer(precision=DoublePrecision()), module)
    # Hooks to call and a backward to run.
    assert not lightning_adds_nothing_to_the_update(a_trainer(callbacks=[BeforeOptimizerStep()]), module)
    instance_hook = L.Callback()
    instance_hook.on_after_backward = lambda trainer, pl_module: None
    assert not lightning_adds_nothing_to_the_update(a_trainer(callbacks=[instance_hook]), module)
    assert not lightning_adds_nothing_to_the_update(a_trainer(), BeforeBackward(module.net, module.optimizer_factory, module.scheduler_factory))
    assert not lightning_adds_nothing_to_the_update(a_trainer(), OwnBackward(module.net, module.optimizer_factory, module.scheduler_factory))
