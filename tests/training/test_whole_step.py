"""model.compile_scope=step: the whole training step compiled as one unit computes what the
uncompiled step computes, falls back like the network's compile, resumes bit for bit, and refuses
what it cannot do."""

from types import SimpleNamespace

import pytest
import torch
from small_fits import (
    assert_same_state, classifier, compile_with, failing_backend, sgd, small_datamodule, tiny_fit, trained_state,
)

from resnet_cifar.errors import ConfigError
from resnet_cifar.models import cifar_resnet
from resnet_cifar.training.module import CompileFallbackWarning
from resnet_cifar.training.whole_step import WholeTrainingStep

WHOLE_STEP = {"compile": True, "compile_scope": "step"}


def test_the_whole_step_computes_exactly_what_the_uncompiled_step_does(monkeypatch, tmp_path):
    # With torch.compile returning the step function itself, the run goes through everything the
    # compiled whole step does (raw batches, the functional gradients, SGD update and BN
    # statistics, the learning rate tensor, zero-initialised momentum, the optimizer's closure,
    # the trial steps of both batch shapes) without a compiler's rounding: bit for bit equal.
    # (Dynamo's "eager" backend is not: its trace of the gradient transform rounds a few weights
    # differently in the last bit.)
    uncompiled = trained_state(tmp_path / "eager")
    monkeypatch.setattr(torch, "compile", lambda function, **options: function)
    whole_step = trained_state(tmp_path / "whole_step", **WHOLE_STEP)
    assert_same_state(whole_step, uncompiled)


def max_difference(ours: tuple[dict, dict], theirs: tuple[dict, dict]) -> float:
    """The largest absolute difference of any weight, BN statistic or momentum buffer."""
    (net, optimizer), (other_net, other_optimizer) = ours, theirs
    differences = [(net[key].double() - other_net[key].double()).abs().max() for key in net]
    differences += [
        (state["momentum_buffer"] - other_optimizer["state"][index]["momentum_buffer"]).abs().max()
        for index, state in optimizer["state"].items()
    ]
    return float(max(differences))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_the_compiled_whole_step_equals_the_uncompiled_step_within_float_tolerance(precision, recwarn, tmp_path):
    # Inductor fuses and reorders the arithmetic: equal up to rounding, which nine steps at lr 0.1
    # amplify (a ReLU input within rounding of zero can land on either side). The yardstick is
    # what rounding alone does: the uncompiled run in the other memory format (NCHW), which
    # computes the same in another order. A wrong update is off by orders of magnitude more.
    uncompiled = trained_state(tmp_path / "eager", precision=precision)
    rounding = max_difference(trained_state(tmp_path / "nchw", precision=precision, channels_last=False), uncompiled)
    torch._dynamo.reset()
    whole_step = trained_state(tmp_path / "whole_step", precision=precision, **WHOLE_STEP)
    assert not [w for w in recwarn if issubclass(w.category, CompileFallbackWarning)]
    assert whole_step[1]["param_groups"] == uncompiled[1]["param_groups"]
    assert whole_step[0]["bn.num_batches_tracked"] == uncompiled[0]["bn.num_batches_tracked"] == 9
    difference = max_difference(whole_step, uncompiled)
    print(f"{precision}: compiled whole step vs uncompiled {difference:.2e}, NCHW vs NHWC {rounding:.2e}")
    assert 0 < rounding and difference < 10 * rounding


@pytest.mark.parametrize("where", ["unavailable", "forward"])
def test_compile_failing_falls_back_to_an_uncompiled_run(where, monkeypatch, tmp_path):
    uncompiled = trained_state(tmp_path / "eager")
    if where == "unavailable":
        def no_compile(*args, **kwargs):
            raise RuntimeError("Dynamo is not supported on this Python")

        monkeypatch.setattr(torch, "compile", no_compile)
        message = "Dynamo is not supported"
    else:
        compile_with(monkeypatch, failing_backend(where))
        message = f"no Triton for the {where}"
    with pytest.warns(CompileFallbackWarning, match=message):
        fallen_back = trained_state(tmp_path / "compiled", **WHOLE_STEP)
    assert_same_state(fallen_back, uncompiled)


def test_lightning_counts_optimizer_steps_through_the_hooks_the_whole_step_calls(monkeypatch, tmp_path):
    # The whole step tells Lightning's manual loop of each step through the LightningOptimizer's
    # private _on_before_step/_on_after_step (module.py, _whole_step_update). If an upgrade
    # counted steps elsewhere, global_step would stay 0 and the run would end with its epoch.
    monkeypatch.setattr(torch, "compile", lambda function, **options: function)
    module = classifier(**WHOLE_STEP)
    trainer = tiny_fit(module, tmp_path, steps=3, max_epochs=1)
    assert trainer.global_step == 3
    assert trainer.fit_loop.epoch_loop.batch_progress.current.completed == 3
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 3


def test_fp16_loss_scaling_and_ddp_are_refused():
    module = classifier(**WHOLE_STEP)
    with pytest.raises(ConfigError, match="does not do fp16 loss scaling"):
        module.check_trainer(SimpleNamespace(world_size=1, precision_plugin=SimpleNamespace(scaler=object())))
    with pytest.raises(ConfigError, match="this run has 2 processes"):
        module.check_trainer(SimpleNamespace(world_size=2, precision_plugin=SimpleNamespace(scaler=None)))
    module.check_trainer(SimpleNamespace(world_size=1, precision_plugin=SimpleNamespace(scaler=None)))
    classifier(compile=True).check_trainer(SimpleNamespace(world_size=2, precision_plugin=None))  # network scope


def test_the_step_compiles_once_per_batch_shape():
    # Nothing the step reads may change between its calls (the data module's mean image on the
    # batches' device was once filled in at the first call; the graph once read the learning
    # rate from the optimizer and was compiled again at each milestone): each is a recompile.
    datamodule = small_datamodule()
    datamodule.setup("fit")
    datamodule.defer_train_augmentation = True
    loader = iter(datamodule.train_dataloader())
    net = cifar_resnet(8, "A", True, 10).to(memory_format=torch.channels_last)
    optimizer = sgd(net.parameters())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1], gamma=0.1)
    step = WholeTrainingStep(net, optimizer, datamodule.training_inputs, channels_last=True)
    torch._dynamo.reset()
    compiled = torch.compile(step.run, backend="eager", dynamic=False, fullgraph=True)
    for call in range(3):
        batch = datamodule.on_after_batch_transfer(next(loader), 0)
        step.sync_with_optimizer()
        with torch._dynamo.config.patch(error_on_recompile=call > 0):
            compiled(*batch)
        scheduler.step()
    assert float(step.lr) == pytest.approx(0.01)
