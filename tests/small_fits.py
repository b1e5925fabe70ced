"""Small CPU fits of the training modules, shared by the tests of how they train."""

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch

from resnet_cifar.data import CIFARDataModule
from resnet_cifar.models import cifar_resnet
from resnet_cifar.training.module import ImageClassifier

NET = {"_target_": "resnet_cifar.models.cifar_resnet", "depth": 8, "shortcut": "A", "residual": True, "num_classes": 10}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
# The learning rate changes at step 4, inside the short fits below.
MULTISTEP = {"_target_": "torch.optim.lr_scheduler.MultiStepLR", "_partial_": True, "milestones": [4], "gamma": 0.1}


def classifier(
    kind: type[ImageClassifier] = ImageClassifier, net: torch.nn.Module | None = None, **options
) -> ImageClassifier:
    """A ResNet-8 module with the paper's SGD (``net`` as a config unless given)."""
    return kind(net=net if net is not None else NET, optimizer=SGD, scheduler=MULTISTEP, **options)


def small_datamodule(**kwargs) -> CIFARDataModule:
    return CIFARDataModule(dataset="synthetic", synthetic_sizes=(300, 100), val_size=50, batch_size=32, **kwargs)


def bare_trainer(tmp_path: Path, **options) -> L.Trainer:
    """A CPU Trainer with nothing around the fit: no logger, checkpoints, progress bar or summary."""
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(accelerator="cpu", default_root_dir=tmp_path, **{**defaults, **options})


def tiny_fit(module: ImageClassifier, tmp_path: Path, steps: int = 3, **trainer_options) -> L.Trainer:
    trainer = bare_trainer(tmp_path, max_steps=steps, limit_val_batches=0, **trainer_options)
    trainer.fit(module, datamodule=small_datamodule())
    return trainer


def trained_state(
    tmp_path: Path,
    steps: int = 9,
    precision: str = "32-true",
    callbacks: Sequence[L.Callback] = (),
    kind: type[ImageClassifier] = ImageClassifier,
    **options,
) -> tuple[dict, dict]:
    """Network state (weights and BN statistics) and optimizer state after ``steps`` steps of a
    fixed run: 250 images in batches of 32, so the epoch's short last batch is a new shape."""
    torch.manual_seed(0)
    module = classifier(kind, **options)
    trainer = tiny_fit(module, tmp_path, steps=steps, precision=precision, callbacks=list(callbacks))
    assert trainer.global_step == steps  # every step counted, however it was made
    return module.net.state_dict(), trainer.optimizers[0].state_dict()


def assert_same_state(ours: tuple[dict, dict], theirs: tuple[dict, dict]) -> None:
    (net, optimizer), (other_net, other_optimizer) = ours, theirs
    assert net.keys() == other_net.keys()
    for key in net:  # exactly: bit for bit, the BN running statistics and their counters included
        assert torch.equal(net[key], other_net[key]), key
    assert optimizer["param_groups"] == other_optimizer["param_groups"]
    for index, state in optimizer["state"].items():
        assert torch.equal(state["momentum_buffer"], other_optimizer["state"][index]["momentum_buffer"]), index


def resnet8() -> torch.nn.Module:
    return cifar_resnet(8, "A", True, 10)


def failing_backend(where: str):
    """A torch.compile backend whose forward compiler fails."""
    from torch._dynamo.backends.common import aot_autograd

    def fails(graph, example_inputs):
        raise RuntimeError(f"no Triton for the {where}")

    return aot_autograd(fw_compiler=fails)


def compile_with(monkeypatch, backend) -> None:
    """Make torch.compile use ``backend`` (and a fresh Dynamo cache)."""
    real_compile = torch.compile
    torch._dynamo.reset()

    def compile_on_backend(function, mode, dynamic, **options):
        return real_compile(function, backend=backend, dynamic=dynamic, **options)

    monkeypatch.setattr(torch, "compile", compile_on_backend)
