"""The ``bare`` and ``classic`` pipelines of bench/throughput.py: plain PyTorch loops, timed.

bare     the project's model and data path without Lightning: the same DataModule batches,
         ``on_after_batch_transfer`` and ``ImageClassifier.forward`` (bare-step: the same
         ``WholeTrainingStep``), driven by a for-loop
classic  the classic pipeline: a torchvision-style Dataset of PIL images with RandomCrop,
         RandomHorizontalFlip, ToTensor and Normalize, a DataLoader with worker processes and a
         for-loop over the same network

Both loops apply the autocast and gradient scaling that Lightning's precision setting stands for.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from throughput_clock import Clock, cudagraph_skips, peak_memory_mb
from throughput_pipelines import compose_config

if TYPE_CHECKING:
    import torch
    from torch.optim.lr_scheduler import LRScheduler

    from resnet_cifar.training.whole_step import WholeTrainingStep

Batches = Callable[[], Iterator[Any]]  # one epoch's batches, on the device

# The classic pipeline's per-channel statistics of CIFAR-10 (the usual constants).
CLASSIC_MEAN = (0.4914, 0.4822, 0.4465)
CLASSIC_STD = (0.2470, 0.2435, 0.2616)


def autocast_and_scaler(
    args: argparse.Namespace, device: torch.device
) -> tuple[Callable[[], AbstractContextManager], torch.amp.GradScaler | None]:
    """The autocast context and GradScaler that Lightning's precision setting stands for."""
    import contextlib

    import torch

    if args.precision == "32-true":
        return contextlib.nullcontext, None
    dtype = torch.float16 if args.precision == "16-mixed" and device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def timed_steps(
    args: argparse.Namespace, device: torch.device, batches: Batches, one_step: Callable[[Any], None]
) -> dict:
    """Call ``one_step(batch)`` on the batches, epoch after epoch, until the clock has timed its steps."""
    clock = Clock(device, args.warmup, args.steps, args.batch_size)
    done = 0
    while True:
        for batch in batches():
            one_step(batch)
            done += 1
            if clock.after_step(done):
                return clock.result()


def train_loop(
    args: argparse.Namespace,
    device: torch.device,
    batches: Batches,
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
) -> dict:
    """The plain PyTorch loop both bare and classic use: forward, loss, backward, step."""
    import torch.nn.functional as F

    autocast, scaler = autocast_and_scaler(args, device)

    def one_step(batch) -> None:
        images, labels = batch
        with autocast():
            loss = F.cross_entropy(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()

    return timed_steps(args, device, batches, one_step)


def whole_step_loop(
    args: argparse.Namespace, device: torch.device, batches: Batches, step: WholeTrainingStep, scheduler: LRScheduler
) -> dict:
    """bare-step's loop: the compiled whole step, then the scheduler, nothing else."""
    from resnet_cifar.training.compiling import CompiledOrEager

    autocast, scaler = autocast_and_scaler(args, device)
    if scaler is not None:
        raise SystemExit("bare-step: the whole step does not do fp16 loss scaling; use --precision bf16-mixed")
    compiled = CompiledOrEager(step.run, None, device, fullgraph=True)

    def one_step(batch) -> None:
        step.sync_with_optimizer()
        with autocast():
            compiled(*batch)
        scheduler.step()

    return timed_steps(args, device, batches, one_step)


def measure_bare(args: argparse.Namespace, compile_scope: str | None) -> dict:
    """One measurement of the bare pipeline (compiled as ``compile_scope`` says)."""
    import lightning as L
    import torch

    from resnet_cifar.training.build import build_datamodule, build_module
    from resnet_cifar.training.whole_step import WholeTrainingStep

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose_config(args, compile_scope, output_dir)
        L.seed_everything(0, verbose=False)
        datamodule = build_datamodule(cfg)
        datamodule.setup("fit")
        datamodule.train_set = datamodule.train_set.to(device)  # where the Trainer would put it
        module = build_module(cfg)
        module.prepare_network(device)
        module.to(device)
        configured = module.configure_optimizers()
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        epoch = iter(range(10**9))
        datamodule.defer_train_augmentation = compile_scope == "step"  # batches as RawTrainBatch

        def batches():
            loader = datamodule.train_dataloader()
            loader.sampler.set_epoch(next(epoch))
            for batch in loader:
                batch = {key: to_device(value, device) for key, value in batch.items()}
                yield datamodule.on_after_batch_transfer(batch, 0)

        if compile_scope == "step":
            step = WholeTrainingStep(module.net, optimizer, datamodule.training_inputs, module.hparams.channels_last)
            result = whole_step_loop(args, device, batches, step, scheduler)
        else:
            result = train_loop(args, device, batches, module.forward, optimizer, scheduler)
        return {
            **result,
            "peak_mem_mb": peak_memory_mb(device),
            "channels_last": module.hparams.channels_last,
            "compiled": compile_scope is not None,
            **cudagraph_skips(device),
        }


def to_device(value: Any, device: torch.device) -> Any:
    """A tensor, or a named tuple of them, on ``device``."""
    if hasattr(value, "to"):
        return value.to(device, non_blocking=True)
    return type(value)(*(to_device(v, device) for v in value))


def measure_classic(args: argparse.Namespace) -> dict:
    """One measurement of the classic pipeline."""
    import lightning as L
    import numpy as np
    import torch
    from hydra.utils import instantiate
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class ClassicCIFAR(Dataset):
        """As torchvision.datasets.CIFAR10: HWC uint8 arrays, one PIL image per item."""

        def __init__(self, data: np.ndarray, targets: list[int], transform) -> None:
            self.data, self.targets, self.transform = data, targets, transform

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int):
            image = Image.fromarray(self.data[index])
            return self.transform(image), self.targets[index]

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose_config(args, None, output_dir)
        L.seed_everything(0, verbose=False)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")  # the same 45k training images
        data = datamodule.train_set.images.permute(0, 2, 3, 1).contiguous().numpy()
        targets = datamodule.train_set.labels.tolist()
        del datamodule
        transform = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(CLASSIC_MEAN, CLASSIC_STD),
            ]
        )
        loader = DataLoader(
            ClassicCIFAR(data, targets, transform),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            drop_last=True,
            persistent_workers=args.workers > 0,
        )
        net = instantiate(cfg.model).to(device)  # the network alone, as the classic pipeline would build it
        optimizer = instantiate(cfg.optimizer)(net.parameters())
        scheduler = instantiate(cfg.scheduler)(optimizer)

        def batches():
            for images, labels in loader:
                yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

        result = train_loop(args, device, batches, net, optimizer, scheduler)
        peak = peak_memory_mb(device)
        loader = None  # ends the workers (the closure above holds it too), so their peak RSS is counted below
        if device.type == "cpu":
            peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {**result, "peak_mem_mb": peak, "channels_last": False, "compiled": False}
