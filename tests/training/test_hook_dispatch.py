"""A training step's hooks reach exactly the callbacks and module hooks that implement them
(training/hook_dispatch.py), in fp32 and bf16-mixed, with the gradients they expect."""

import lightning as L
import pytest
from lightning.pytorch.profilers import SimpleProfiler
from probes import RecordBatchHooks
from small_fits import assert_same_state, constant, sgd, tiny_fit, trained_state

from resnet_cifar.models import cifar_resnet
from resnet_cifar.training.hook_dispatch import TRAINING_STEP_HOOKS, DispatchOnlyImplementedHooks, skip_empty_step_hooks
from resnet_cifar.training.module import ImageClassifier

STEP_HOOKS = [
    "on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_train_batch_end",
]


class Silent(L.Callback):
    """Implements no hook of a training step."""


class EpochOnly(L.Callback):
    """Implements an epoch hook only."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_train_epoch_start(self, *args) -> None:
        self.epochs += 1


class CountsBackward(ImageClassifier):
    """A module that implements one training-step hook of its own."""

    def __init__(self) -> None:
        super().__init__(cifar_resnet(8, "A", True, 10), sgd, constant)
        self.after_backward_calls = 0

    def on_after_backward(self) -> None:
        self.after_backward_calls += 1


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_only_implemented_batch_hooks_are_dispatched_and_all_of_them_every_step(tmp_path, precision):
    recorder, silent, epoch_only = RecordBatchHooks(str(tmp_path)), Silent(), EpochOnly()
    module = CountsBackward()
    profiler = SimpleProfiler()
    callbacks = [recorder, silent, epoch_only, DispatchOnlyImplementedHooks()]
    tiny_fit(module, tmp_path, steps=4, precision=precision, callbacks=callbacks, profiler=profiler)

    assert recorder.calls == STEP_HOOKS * 4 and len(recorder.gradient_norms) == 4 and min(recorder.gradient_norms) > 0
    assert module.after_backward_calls == 4 and epoch_only.epochs == 1
    # Lightning did not call the hooks left out: no profiler record of them, none of them raised.
    actions = set(profiler.recorded_durations)
    for hook in STEP_HOOKS:
        assert f"[Callback]{recorder.state_key}.{hook}" in actions
        assert f"[Callback]{silent.state_key}.{hook}" not in actions
    assert "[LightningModule]CountsBackward.on_after_backward" in actions
    assert "[LightningModule]CountsBackward.on_before_backward" not in actions
    assert all(getattr(silent, hook) is None for hook in TRAINING_STEP_HOOKS)
    assert recorder.on_before_optimizer_step is not None and module.on_after_backward is not None


def test_the_training_results_do_not_depend_on_the_dispatch(tmp_path):
    plain = trained_state(tmp_path, steps=5)
    dispatched = trained_state(tmp_path, steps=5, callbacks=[DispatchOnlyImplementedHooks()])
    assert_same_state(plain, dispatched)  # bit for bit, the optimizer's state included


def test_a_hook_set_on_the_instance_is_kept():
    callback = Silent()
    callback.on_train_batch_end = lambda trainer, pl_module, outputs, batch, batch_idx: None
    hook = callback.on_train_batch_end
    skip_empty_step_hooks(callback, L.Callback)
    assert callback.on_train_batch_end is hook and callback.on_train_batch_start is None
