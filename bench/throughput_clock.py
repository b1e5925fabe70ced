"""The clocks and meters of one throughput measurement.

``Clock`` times the steps after the warm-up, the device synchronised at both ends, and turns them
into images/s, ms/step, processor time per image (the DataLoader workers' included), the fastest
tenth of the steps and the page faults per step. ``SharedWork`` counts the time spent inside the
work that the project's and the bare pipeline both do, so that the host time around it can be
told apart. ``peak_memory_mb`` and ``cudagraph_skips`` read what a run left behind.
"""

from __future__ import annotations

import functools
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def cpu_seconds_of_children() -> float:
    """Processor time of this process's live child processes (the DataLoader workers)."""
    import multiprocessing

    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


class SharedWork:
    """The training thread's time inside the work that project and bare pipelines both do.

    With --host-overhead each child wraps these functions, so that its clock can subtract their
    time from each step: what is left is the host time around them (Lightning's loop, hooks,
    callbacks and logging in the project; the loop itself in the bare pipeline). Unlike a step's
    wall time it barely moves when other programs slow the network's kernels down.
    Eager and network-compiled steps: data loader, augmentation, forward, loss, backward, zero_grad,
    the SGD update (the functional ``torch.optim.sgd.sgd``, without the optimizer's ``step``
    around it, which in the project also runs Lightning's closure) and the scheduler; whole-step
    pipelines: the data loader, the compiled step and the scheduler.
    """

    seconds = 0.0
    _inside = False

    @classmethod
    def timed(cls, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed_call(*args, **kwargs):
            if cls._inside:  # a shared function called from another one: its time is counted once
                return function(*args, **kwargs)
            cls._inside = True
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                cls.seconds += time.perf_counter() - started
                cls._inside = False

        return timed_call

    @classmethod
    def install(cls, whole_step: bool) -> None:
        import importlib

        import torch
        import torch.nn.functional as F
        from torch.optim.lr_scheduler import LRScheduler
        from torch.utils.data.dataloader import _BaseDataLoaderIter

        from resnet_cifar.data.datamodule import CIFARDataModule
        from resnet_cifar.training.compiling import CompiledOrEager
        from resnet_cifar.training.module import ImageClassifier

        shared = [(_BaseDataLoaderIter, "__next__"), (LRScheduler, "step")]
        if whole_step:  # the compiled step, in both pipelines
            shared += [(CompiledOrEager, "__call__")]
        else:  # (inside a compiled step these would break its graph)
            shared += [
                (CIFARDataModule, "training_inputs"),
                (ImageClassifier, "forward"),
                (F, "cross_entropy"),
                (torch.autograd, "backward"),
                (torch.optim.Optimizer, "zero_grad"),
                (importlib.import_module("torch.optim.sgd"), "sgd"),
            ]
        for owner, name in shared:
            setattr(owner, name, cls.timed(getattr(owner, name)))


class Clock:
    """Times steps warmup+1 .. warmup+steps: synchronises the device at both ends.

    Besides the mean it keeps each step's duration: on a shared machine other programs slow some
    stretches of steps down, by more than the host overhead being measured, and never speed one
    up, so the fastest tenth of the steps shows what a step costs undisturbed.
    """

    def __init__(self, device: torch.device, warmup: int, steps: int, batch_size: int) -> None:
        self.device, self.warmup, self.steps, self.batch_size = device, warmup, steps, batch_size
        self.step_ends: list[float] = []

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def after_step(self, done: int) -> bool:
        """Call after each optimizer step with the number done; True once the timed steps are done."""
        if done == self.warmup:
            self.sync()
            self.started, self.cpu_started = time.perf_counter(), time.process_time()
            self.children_started = cpu_seconds_of_children()
            self.faults_started = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            self.step_ends = [self.started]
            self.shared_at_ends = [SharedWork.seconds]
        elif done == self.warmup + self.steps:
            self.sync()
            self.seconds = time.perf_counter() - self.started
            self.cpu_seconds = time.process_time() - self.cpu_started
            self.cpu_seconds += cpu_seconds_of_children() - self.children_started
            self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults_started
            self.step_ends.append(self.started + self.seconds)
            self.shared_at_ends.append(SharedWork.seconds)
            return True
        elif done > self.warmup:
            self.step_ends.append(time.perf_counter())
            self.shared_at_ends.append(SharedWork.seconds)
        return False

    def result(self) -> dict[str, float]:
        images = self.steps * self.batch_size
        durations = [end - start for start, end in zip(self.step_ends, self.step_ends[1:])]
        shared = [end - start for start, end in zip(self.shared_at_ends, self.shared_at_ends[1:])]
        return {
            "images_per_s": images / self.seconds,
            "ms_per_step": 1000 * self.seconds / self.steps,
            "cpu_ms_per_image": 1000 * self.cpu_seconds / images,
            "fast_ms_per_step": 1000 * sorted(durations)[len(durations) // 10],  # the 10th percentile
            # Host time outside SharedWork (without --host-overhead nothing is subtracted: the median step).
            "outside_ms_per_step": 1000 * statistics.median(d - s for d, s in zip(durations, shared)),
            "page_faults_per_step": self.faults / self.steps,  # the main process's minor faults
        }


def peak_memory_mb(device: torch.device) -> float:
    """The peak memory of this process: CUDA memory allocated on a GPU, the resident set size on the CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return own


def cudagraph_skips(device: torch.device) -> dict:
    """How often Inductor ran a compiled graph without CUDA graphs (it logs why: "skipping
    cudagraphs due to ..."); a step that is one graph replay has none."""
    if device.type != "cuda":
        return {}
    from torch._dynamo.utils import counters

    return {"cudagraph_skips": counters["inductor"]["cudagraph_skips"]}
