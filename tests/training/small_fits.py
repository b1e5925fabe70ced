"""Small CPU fits of the training module, shared by the tests of how it trains."""

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch

from resnet_cifar.data import CIFARDataModule
from resnet_cifar.models import cifar_resnet
from resnet_cifar.training.module import ImageClassifier


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)


def constant(optimizer):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def classifier(net=None, **options) -> ImageClassifier:
    return ImageClassifier(net or cifar_resnet(8, "A", True, 10), sgd, constant, **options)


def attach_trainer(datamodule: CIFARDataModule, root_device: torch.device) -> None:
    fit_loop = SimpleNamespace(restarting=False)
    strategy = SimpleNamespace(root_device=root_device)
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=1, fit_loop=fit_loop, strategy=strategy)


def small_datamodule(**kwargs) -> CIFARDataModule:
    return CIFARDataModule(dataset="synthetic", synthetic_sizes=(300, 100), val_size=50, batch_size=32, **kwargs)


def tiny_fit(module: ImageClassifier, tmp_path: Path, steps: int = 3, **trainer_options) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path, **trainer_options,
    )
    trainer.fit(module, datamodule=small_datamodule())
    return trainer


def failing_backend(where: str):
    """A torch.compile backend whose forward or backward compiler fails (AOT autograd compiles
    the backward lazily, at the first backward, as Inductor does)."""
    from torch._dynamo.backends.common import aot_autograd

    def fails(graph, example_inputs):
        raise RuntimeError(f"no Triton for the {where}")

    def keeps(graph, example_inputs):
        return graph.forward

    return aot_autograd(fw_compiler=fails if where == "forward" else keeps, bw_compiler=fails if where == "backward" else keeps)


def compile_with(monkeypatch, backend) -> None:
    """Make the module's torch.compile use ``backend`` (and a fresh Dynamo cache)."""
    real_compile = torch.compile
    torch._dynamo.reset()

    def compile_on_backend(function, mode, dynamic, **options):
        return real_compile(function, backend=backend, dynamic=dynamic, **options)

    monkeypatch.setattr(torch, "compile", compile_on_backend)


def trained_state(
    tmp_path: Path, steps: int = 9, precision: str = "32-true", callbacks: Sequence[L.Callback] = (), **options
) -> tuple[dict, dict]:
    """Network state (weights and BN statistics) and optimizer state after ``steps`` steps of a
    fixed run: 250 images in batches of 32, so the epoch's short last batch is a new shape."""
    torch.manual_seed(0)
    module = classifier(**options)
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
