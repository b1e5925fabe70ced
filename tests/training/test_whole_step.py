"""module=whole_step: the whole training step as one compiled unit computes what ImageClassifier
computes, falls back like the network's compile, counts its images, and refuses before any work
what it cannot do."""

import csv
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from resnet_cifar.errors import ConfigError
from resnet_cifar.training.callbacks import TrainingClock
from resnet_cifar.training.compiling import CompileFallbackWarning
from resnet_cifar.training.module import ImageClassifier
from resnet_cifar.training.whole_step import WholeTrainingStep
from resnet_cifar.training.whole_step_module import WholeStepClassifier
from small_fits import (
    SGD,
    assert_same_state,
    classifier,
    compile_with,
    failing_backend,
    resnet8,
    small_datamodule,
    tiny_fit,
    trained_state,
)


@pytest.mark.parametrize("compiled", [False, True], ids=["step-function", "through-torch.compile"])
def test_whole_step_computes_exactly_what_the_classifier_does(compiled, monkeypatch, tmp_path):
    # The step function uncompiled, and through the module's compile path with torch.compile
    # returning the function itself: raw batches, the functional gradients, SGD update and BN
    # statistics, the learning rate tensor across a milestone, zero-initialised momentum, the
    # short last batch, Lightning counting the steps. Bit for bit what ImageClassifier does.
    # (Dynamo's "eager" backend is not: its trace of the gradient transform rounds a few weights
    # differently in the last bit.)
    classifier_state = trained_state(tmp_path / "classifier")
    monkeypatch.setattr(torch, "compile", lambda function, **options: function)
    whole_step = trained_state(tmp_path / "whole_step", kind=WholeStepClassifier, compile=compiled)
    assert_same_state(whole_step, classifier_state)


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
def test_compiled_whole_step_equals_classifier_within_tolerance(precision, recwarn, tmp_path):
    # Inductor fuses and reorders the arithmetic: equal up to rounding, which nine steps at lr 0.1
    # amplify (a ReLU input within rounding of zero can land on either side). The yardstick is
    # what rounding alone does: the classifier in the other memory format (NCHW), which computes
    # the same in another order. A wrong update is off by orders of magnitude more.
    classifier_state = trained_state(tmp_path / "classifier", precision=precision)
    rounding = max_difference(
        trained_state(tmp_path / "nchw", precision=precision, channels_last=False), classifier_state
    )
    torch._dynamo.reset()
    whole_step = trained_state(tmp_path / "whole_step", precision=precision, kind=WholeStepClassifier, compile=True)
    assert not [w for w in recwarn if issubclass(w.category, CompileFallbackWarning)]
    assert whole_step[1]["param_groups"] == classifier_state[1]["param_groups"]
    assert whole_step[0]["bn.num_batches_tracked"] == classifier_state[0]["bn.num_batches_tracked"] == 9
    difference = max_difference(whole_step, classifier_state)
    print(f"{precision}: compiled whole step vs classifier {difference:.2e}, NCHW vs NHWC {rounding:.2e}")
    assert 0 < rounding and difference < 10 * rounding


@pytest.mark.parametrize("where", ["unavailable", "forward"])
def test_compile_failing_falls_back_to_the_same_result(where, monkeypatch, tmp_path):
    classifier_state = trained_state(tmp_path / "classifier")
    if where == "unavailable":

        def no_compile(*args, **kwargs):
            raise RuntimeError("Dynamo is not supported on this Python")

        monkeypatch.setattr(torch, "compile", no_compile)
        message = "Dynamo is not supported"
    else:
        compile_with(monkeypatch, failing_backend(where))
        message = f"no Triton for the {where}"
    with pytest.warns(CompileFallbackWarning, match=message):
        fallen_back = trained_state(tmp_path / "compiled", kind=WholeStepClassifier, compile=True)
    assert_same_state(fallen_back, classifier_state)


def logged(kind: type[ImageClassifier], tmp_path, log_every_n_steps: int = 2) -> tuple[list[dict], dict]:
    """What a 9-step fit over two epochs writes to its logger (every 2 steps), and its final
    metrics (metrics.json's train_loss and train_err)."""
    torch.manual_seed(0)
    module = classifier(kind, compile=False)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=9,
        log_every_n_steps=log_every_n_steps,
        logger=CSVLogger(tmp_path, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=small_datamodule())
    assert trainer.fit_loop._skip_backward is False, "the Trainer backpropagates again for the next module it fits"
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    written = [{key: value for key, value in row.items() if value} for row in rows]
    final = {key: float(trainer.callback_metrics[key]) for key in ("train/loss", "train/err")}
    return written, final


def test_the_whole_step_logs_what_the_classifier_logs(monkeypatch, tmp_path):
    # The whole step logs train/loss only on the steps that are written and train/err once an
    # epoch, from its own sums: the same rows, and the same final values, as self.log at every step.
    classifier_logged = logged(ImageClassifier, tmp_path / "classifier")
    monkeypatch.setattr(torch, "compile", lambda function, **options: function)
    whole_step_logged = logged(WholeStepClassifier, tmp_path / "whole_step")
    assert whole_step_logged == classifier_logged
    rows = classifier_logged[0]
    # Steps as the run's log counts them, optimizer steps done: log_every_n_steps=2 writes 2, 4, ...
    assert [row["step"] for row in rows if "train/loss" in row] == ["2", "4", "6", "8"]
    assert [row["epoch"] for row in rows if "train/err" in row] == ["0.0", "1.0"]


def test_log_every_n_steps_0_writes_no_step_same_final_values(monkeypatch, tmp_path):
    # Lightning takes trainer.log_every_n_steps=0 for "never write per-step values"; the whole
    # step divided the step number by it.
    classifier_logged = logged(ImageClassifier, tmp_path / "classifier", log_every_n_steps=0)
    monkeypatch.setattr(torch, "compile", lambda function, **options: function)
    whole_step_logged = logged(WholeStepClassifier, tmp_path / "whole_step", log_every_n_steps=0)
    assert whole_step_logged == classifier_logged
    rows = classifier_logged[0]
    assert not [row for row in rows if "train/loss" in row]
    assert [row["epoch"] for row in rows if "train/err" in row] == ["0.0", "1.0"]


@pytest.mark.parametrize("kind", [ImageClassifier, WholeStepClassifier])
def test_images_per_second_counts_the_images_of_each_step(kind, tmp_path):
    # 9 steps over 250 images in batches of 32: 7 x 32 + 26, then 32 more. The whole step's batches
    # are (images, crop_flip, labels): counting the crop/flip fields gave 3 images a step.
    clock = TrainingClock()
    tiny_fit(classifier(kind, compile=False), tmp_path, steps=9, callbacks=[clock])
    assert clock.images == 250 + 32
    assert clock.images_per_second is not None and clock.images_per_second > 0


class UsesGradients(L.Callback):
    def on_after_backward(self, trainer, pl_module) -> None:
        pass


class ClipsItself(WholeStepClassifier):
    def on_before_optimizer_step(self, optimizer) -> None:
        pass


def plain_trainer(**changes) -> SimpleNamespace:
    trainer = dict(
        world_size=1,
        precision_plugin=SimpleNamespace(scaler=None),
        gradient_clip_val=None,
        accumulate_grad_batches=1,
        callbacks=[TrainingClock()],
    )
    return SimpleNamespace(**{**trainer, **changes})


@pytest.mark.parametrize(
    "changes,named",
    [
        ({"world_size": 2}, "DDP"),
        ({"precision_plugin": SimpleNamespace(scaler=object())}, "fp16 loss scaling"),
        ({"gradient_clip_val": 1.0}, "trainer.gradient_clip_val"),
        ({"accumulate_grad_batches": 2}, "trainer.accumulate_grad_batches"),
        ({"callbacks": [UsesGradients()]}, "UsesGradients.on_after_backward"),
    ],
    ids=["ddp", "fp16", "clipping", "accumulation", "gradient-hook"],
)
def test_what_whole_step_cannot_do_is_refused_with_alternative(changes, named):
    module = classifier(WholeStepClassifier)
    module.check_trainer(plain_trainer())  # the paper's recipe on one device passes
    with pytest.raises(ConfigError, match=f"module=whole_step .*{named}.*use module=classifier"):
        module.check_trainer(plain_trainer(**changes))


def test_gradient_hooks_epoch_schedulers_other_sgds_are_refused():
    with pytest.raises(ConfigError, match="ClipsItself.on_before_optimizer_step"):
        classifier(ClipsItself).check_trainer(plain_trainer())
    with pytest.raises(ConfigError, match="module.lr_scheduler.interval=step"):
        classifier(WholeStepClassifier, lr_scheduler={"interval": "epoch", "monitor": "val/err"})
    adam = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.001}
    module = WholeStepClassifier(
        net=resnet8(),
        optimizer=adam,
        scheduler={"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 10},
    )
    with pytest.raises(ConfigError, match="the optimizer is Adam; use optimizer=sgd"):
        module.configure_optimizers()


def test_a_trainer_with_clipping_is_refused_before_any_step(tmp_path):
    with pytest.raises(ConfigError, match="gradient clipping"):
        tiny_fit(classifier(WholeStepClassifier, compile=False), tmp_path, gradient_clip_val=1.0)


def test_the_step_compiles_once_per_batch_shape():
    # Nothing the step reads may change between its calls (the data module's mean image on the
    # batches' device was once filled in at the first call; the graph once read the learning
    # rate from the optimizer and was compiled again at each milestone): each is a recompile.
    datamodule = small_datamodule()
    datamodule.setup("fit")
    datamodule.defer_train_augmentation = True
    loader = iter(datamodule.train_dataloader())
    net = resnet8().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=SGD["lr"], momentum=SGD["momentum"], weight_decay=SGD["weight_decay"]
    )
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
