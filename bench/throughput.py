"""Training throughput of the project's path against the classic pipeline, in one table.

    python bench/throughput.py                                   # CPU, ResNet-20, synthetic data
    python bench/throughput.py --data-root /tmp/cifar/cifar10-jpeg --steps 30 --repeats 3
    python bench/throughput.py --device cuda --precision bf16-mixed --depths 20 56 110 --compile
    python bench/throughput.py --host-overhead [--compile]      # host ms/step, Lightning's share
    python bench/throughput.py --device cuda --compile step      # only the whole-step variants

Each configuration runs in its own subprocess (fresh memory statistics, no shared caches), one
after another on the same data and machine; with --repeats the configurations are interleaved
round by round and the table shows the median. Pipelines:

  project  the project's training path: Hydra config -> CIFARDataModule, ImageClassifier and
           Lightning Trainer with every configured callback (checkpoints every 1000 steps,
           progress bar, lr monitor, ...) and the TensorBoard logger; validation off
           (limit_val_batches=0), since it is not a training step
  bare     a plain PyTorch loop over the project's model and data path: the same DataModule
           batches, on_after_batch_transfer and ImageClassifier.forward, no Lightning; the gap
           to `project` is Lightning's overhead (plus the module's metric and logging calls)
  classic  the classic pipeline: a torchvision-style Dataset yielding one PIL image per item,
           RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize, a DataLoader
           with --workers worker processes, a plain PyTorch loop; the same network
  project-compile, bare-compile   the same with module.compile=true (the network's forward and
           backward compiled; augmentation and the SGD update run op by op)
  project-step, bare-step   module=whole_step: the whole training step (augmentation, forward,
           backward, SGD update) compiled as one graph; bare-step calls the same
           WholeTrainingStep from a plain loop

With --host-overhead the network is made nearly free (ResNet-8, batch 8, one thread) and each
pair (project and bare, compiled pairs with --compile) gets one line: its ms/step and Lightning's
share (project minus bare) three ways: in wall time, in the fastest tenth of the steps, and in
the host time outside the work both do (data, augmentation, forward, loss, backward, SGD update,
scheduler: see SharedWork), which other programs on the machine disturb least. Its children run
with glibc's malloc thresholds fixed (STEADY_MALLOC), and the line gives each side's page faults
per step.

Throughput is steady state: --warmup steps first (not timed), then --steps timed steps, the
device synchronised at both ends. Peak memory is torch.cuda.max_memory_allocated on a GPU and
the peak resident set size of the main process on the CPU (classic: plus its largest worker).
CPU ms/image is the processor time (all threads, and the classic pipeline's workers) spent
per trained image: unlike images/s it barely moves when other programs share the machine.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINES = ("project", "bare", "classic", "project-compile", "bare-compile", "project-step", "bare-step")
# What --compile adds, by what is compiled: the network (module.compile=true) or the whole step
# (module=whole_step).
COMPILED_PIPELINES = {"network": ("project-compile", "bare-compile"), "step": ("project-step", "bare-step")}
DEFAULT_PIPELINES = ("project", "bare", "classic")
# --host-overhead children: glibc's malloc thresholds fixed instead of adjusted by each process's
# history. With the dynamic ones the project's process faulted about 190 fresh pages per step for
# its CPU tensors against the bare loop's 60 (mmap'ed and trimmed memory, 2026-11-29): CPU
# allocator work inside the forward and backward, which a GPU's caching allocator does not do.
STEADY_MALLOC = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
# The classic pipeline's per-channel statistics of CIFAR-10 (the usual constants).
CLASSIC_MEAN = (0.4914, 0.4822, 0.4465)
CLASSIC_STD = (0.2470, 0.2435, 0.2616)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--depths", type=int, nargs="+", default=[20], help="ResNet depths, e.g. 20 56 110")
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(DEFAULT_PIPELINES))
    parser.add_argument(
        "--compile",
        nargs="*",
        choices=tuple(COMPILED_PIPELINES),
        default=None,
        metavar="SCOPE",
        help="also run the compiled pipelines of these scopes: network (module.compile=true: "
        "project-compile, bare-compile), step (module=whole_step: project-step, bare-step); "
        "no scope given: both",
    )
    parser.add_argument(
        "--precision",
        default=None,
        help="32-true, bf16-mixed or 16-mixed (default: 32-true on cpu, bf16-mixed on cuda)",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 on cpu, 300 on cuda)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5 on cpu, 50 on cuda)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--data-root",
        default=None,
        help="a CIFAR-10 root (image folder or torchvision folder); default: synthetic data",
    )
    parser.add_argument(
        "--synthetic-size",
        type=int,
        default=50_000,
        help="training images of the synthetic data (before the 5k val split)",
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="classic DataLoader workers")
    parser.add_argument(
        "--channels-last",
        choices=("true", "false"),
        default=None,
        help="module.channels_last for project and bare (default: the config's, true)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads in every configuration (default: torch's own choice)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds over all configurations; the table shows medians (default 1; 3 with --host-overhead)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds one configuration may take")
    parser.add_argument(
        "--sync-check",
        action="store_true",
        help="cuda: count host syncs in the project's timed steps (torch.cuda.set_sync_debug_mode); "
        "cpu: count the collectives per step of a 2-process DDP run (gloo), with Lightning's "
        "SIGTERM handling and the project's (bench/ddp_syncs.py)",
    )
    parser.add_argument(
        "--host-overhead",
        action="store_true",
        help="host time per step: a nearly free network (ResNet-8, batch 8, one thread, 30 warm-up + 300 "
        "steps, 3 interleaved rounds at least) for project and bare (and the compiled pairs "
        "with --compile), then one line per pair with ms/step and Lightning's share",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    parser.add_argument("--child", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host_overhead:
        apply_host_overhead_settings(args)
    args.repeats = args.repeats or 1
    on_gpu = args.device == "cuda"
    args.precision = args.precision or ("bf16-mixed" if on_gpu else "32-true")
    args.steps = args.steps if args.steps is not None else (300 if on_gpu else 30)
    args.warmup = args.warmup if args.warmup is not None else (50 if on_gpu else 5)
    if args.compile is not None:
        for scope in args.compile or COMPILED_PIPELINES:
            args.pipelines += [p for p in COMPILED_PIPELINES[scope] if p not in args.pipelines]
    if args.precision not in ("32-true", "bf16-mixed", "16-mixed"):
        parser.error(f"--precision {args.precision}: use 32-true, bf16-mixed or 16-mixed")
    return args


HOST_OVERHEAD_PAIRS = (("project", "bare"), *COMPILED_PIPELINES.values())


def apply_host_overhead_settings(args: argparse.Namespace) -> None:
    """--host-overhead: the network's compute made nearly free, so that a step's time is the
    host's (Python, the framework, per-operator dispatch); on a GPU that sets the step rate of a
    small ResNet. Steps, warm-up and repeats given explicitly are kept; depth, batch and threads
    are fixed."""
    args.depths, args.batch_size, args.threads = [8], 8, 1
    args.steps = args.steps if args.steps is not None else 300
    args.warmup = args.warmup if args.warmup is not None else 30
    args.repeats = args.repeats or 3
    args.pipelines = list(HOST_OVERHEAD_PAIRS[0])  # --compile adds the compiled pairs


def host_overhead_lines(args: argparse.Namespace, measurements: dict[tuple[int, str], list[dict]]) -> list[str]:
    """Host ms/step of each pipeline and Lightning's share (project minus bare): the median of
    the per-round differences, rounds being interleaved so that both saw the same load."""
    lines = []
    for depth in args.depths:
        for project, bare in HOST_OVERHEAD_PAIRS:
            rounds = list(zip(measurements.get((depth, project), []), measurements.get((depth, bare), [])))
            rounds = [(a, b) for a, b in rounds if "error" not in a and "error" not in b]
            if not rounds:
                continue
            wall = [a["ms_per_step"] - b["ms_per_step"] for a, b in rounds]
            cpu = [args.batch_size * (a["cpu_ms_per_image"] - b["cpu_ms_per_image"]) for a, b in rounds]
            fast = [a["fast_ms_per_step"] - b["fast_ms_per_step"] for a, b in rounds]
            outside = [a["outside_ms_per_step"] - b["outside_ms_per_step"] for a, b in rounds]
            lines.append(
                f"host ms/step (ResNet-{depth}, batch {args.batch_size}): {project} "
                f"{median_of([a for a, _ in rounds], 'ms_per_step'):.2f}, "
                f"{bare} {median_of([b for _, b in rounds], 'ms_per_step'):.2f}; "
                f"Lightning's share ({project} - {bare}) = {statistics.median(wall):.2f} ms/step "
                f"(median of {len(rounds)} rounds: {', '.join(f'{d:.2f}' for d in wall)}), "
                f"CPU time {statistics.median(cpu):.2f} ms/step; in the fastest tenth of the steps "
                f"{statistics.median(fast):.2f} ms/step (rounds: {', '.join(f'{d:.2f}' for d in fast)}); "
                f"outside the shared work {project} {median_of([a for a, _ in rounds], 'outside_ms_per_step'):.3f}, "
                f"{bare} {median_of([b for _, b in rounds], 'outside_ms_per_step'):.3f}, share "
                f"{statistics.median(outside):.3f} ms/step (rounds: {', '.join(f'{d:.3f}' for d in outside)}); "
                f"page faults per step {project} {median_of([a for a, _ in rounds], 'page_faults_per_step'):.0f}, "
                f"{bare} {median_of([b for _, b in rounds], 'page_faults_per_step'):.0f}"
            )
    return lines


# ---------------------------------------------------------------------------------------------
# Measurements, one per subprocess


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
    def timed(cls, function):
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

    def __init__(self, device, warmup: int, steps: int, batch_size: int) -> None:
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

    def result(self) -> dict:
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


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return own


def data_overrides(args: argparse.Namespace) -> list[str]:
    if args.data_root:
        return [f"data.root={args.data_root}"]
    val_size = args.synthetic_size // 10  # 5000 of 50k, as the real split
    return ["data=synthetic", f"data.synthetic_sizes=[{args.synthetic_size},1000]", f"data.val_size={val_size}"]


def compile_scope_of(pipeline: str) -> str | None:
    """What a pipeline compiles: "network", "step" (the whole step), or None."""
    return next((scope for scope, pipelines in COMPILED_PIPELINES.items() if pipeline in pipelines), None)


def compose_config(args: argparse.Namespace, compile_scope: str | None, output_dir: str):
    """The project's composed training config for this measurement."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from resnet_cifar.resolvers import register_resolvers

    register_resolvers()
    overrides = [
        f"trainer={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"trainer.precision={args.precision}",
        # One step more than timed: the final step's checkpoint and validation are not a training step.
        f"trainer.max_steps={args.warmup + args.steps + 1}",
        f"model.depth={args.depth}",
        *(["module=whole_step"] if compile_scope == "step" else []),
        f"module.compile={str(compile_scope is not None).lower()}",
        f"data.batch_size={args.batch_size}",
        *([f"module.channels_last={args.channels_last}"] if args.channels_last else []),
        *data_overrides(args),
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.output_dir = output_dir
    HydraConfig.instance().set_config(cfg)
    return cfg


def measure_project(args: argparse.Namespace, compile_scope: str | None) -> dict:
    import lightning as L
    import torch

    from resnet_cifar.training.build import build_datamodule, build_module, build_trainer
    from resnet_cifar.training.compiling import CompileFallbackWarning

    sync_check = args.sync_check and args.device == "cuda"

    class StepClock(L.Callback):
        def __init__(self, clock: Clock) -> None:
            self.clock = clock

        def on_train_batch_end(self, trainer, *args) -> None:
            finished = self.clock.after_step(trainer.global_step)
            if sync_check and trainer.global_step == self.clock.warmup:
                torch.cuda.set_sync_debug_mode("warn")
            if sync_check and finished:
                torch.cuda.set_sync_debug_mode("default")

    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose_config(args, compile_scope, output_dir)
        L.seed_everything(0, verbose=False)
        datamodule = build_datamodule(cfg)
        module = build_module(cfg)
        clock = Clock(torch.device(args.device), args.warmup, args.steps, args.batch_size)
        trainer = build_trainer(cfg, limit_val_batches=0, enable_model_summary=False)
        trainer.callbacks.insert(0, StepClock(clock))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(module, datamodule=datamodule)
        device = trainer.strategy.root_device
        compiled = module.compiled_step if compile_scope == "step" else module.compiled_net
        result = {
            **clock.result(),
            "peak_mem_mb": peak_memory_mb(device),
            "channels_last": module.hparams.channels_last,
            "compiled": getattr(compiled, "compiled", None) is not None,
        }
        if any(issubclass(w.category, CompileFallbackWarning) for w in caught):
            result["fallback_warning"] = True
        result.update(cudagraph_skips(device))
        if sync_check:
            syncs = [w for w in caught if "synchronizing" in str(w.message)]
            sites = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
            result["syncs_per_step"] = len(syncs) / args.steps
            result["sync_sites"] = sites.most_common(5)
        return result


def cudagraph_skips(device) -> dict:
    """How often Inductor ran a compiled graph without CUDA graphs (it logs why: "skipping
    cudagraphs due to ..."); a step that is one graph replay has none."""
    if device.type != "cuda":
        return {}
    from torch._dynamo.utils import counters

    return {"cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


def autocast_and_scaler(args: argparse.Namespace, device):
    """The autocast context and GradScaler that Lightning's precision setting stands for."""
    import contextlib

    import torch

    if args.precision == "32-true":
        return contextlib.nullcontext, None
    dtype = torch.float16 if args.precision == "16-mixed" and device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def timed_steps(args, device, batches, one_step) -> dict:
    """Call ``one_step(batch)`` on the batches, epoch after epoch, until the clock has timed its steps."""
    clock = Clock(device, args.warmup, args.steps, args.batch_size)
    done = 0
    while True:
        for batch in batches():
            one_step(batch)
            done += 1
            if clock.after_step(done):
                return clock.result()


def train_loop(args, device, batches, forward, optimizer, scheduler) -> dict:
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


def whole_step_loop(args, device, batches, step, scheduler) -> dict:
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


def to_device(value, device):
    if hasattr(value, "to"):
        return value.to(device, non_blocking=True)
    return type(value)(*(to_device(v, device) for v in value))


def measure_classic(args: argparse.Namespace) -> dict:
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
        cfg = compose_config(args, False, output_dir)
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


def run_child(args: argparse.Namespace) -> None:
    import logging

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    if args.host_overhead:
        SharedWork.install(whole_step=compile_scope_of(args.child) == "step")
    if args.child == "classic":
        result = measure_classic(args)
    elif args.child.startswith("bare"):
        result = measure_bare(args, compile_scope_of(args.child))
    else:
        result = measure_project(args, compile_scope_of(args.child))
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The parent: one subprocess per configuration, then the table


def child_command(args: argparse.Namespace, pipeline: str, depth: int) -> list[str]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        pipeline,
        "--depth",
        str(depth),
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--synthetic-size",
        str(args.synthetic_size),
    ]
    if args.data_root:
        command += ["--data-root", args.data_root]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.channels_last:
        command += ["--channels-last", args.channels_last]
    if args.sync_check:
        command += ["--sync-check"]
    if args.host_overhead:
        command += ["--host-overhead"]
    return command


def run_configuration(args: argparse.Namespace, pipeline: str, depth: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    if args.host_overhead:
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), STEADY_MALLOC]))
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            child_command(args, pipeline, depth), env=env, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-15:]
        print(
            f"  {pipeline} depth {depth} failed (exit {completed.returncode}):\n    " + "\n    ".join(tail),
            file=sys.stderr,
        )
        return {"error": f"exit status {completed.returncode}"}
    result = json.loads(lines[-1][len("RESULT ") :])
    result["wall_s"] = time.perf_counter() - started
    result["fallback_warning"] = result.get("fallback_warning", False) or "CompileFallbackWarning" in completed.stderr
    return result


def median_of(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def machine_description(args: argparse.Namespace) -> str:
    import torch

    if args.device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = args.threads or torch.get_num_threads()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{threads} threads, load average {args.load_at_start:.1f} at the start and {load:.1f} at the end"
    )


def format_table(args: argparse.Namespace, measurements: dict[tuple[int, str], list[dict]]) -> str:
    memory = "peak CUDA MiB" if args.device == "cuda" else "peak RSS MiB"
    lines = [
        f"| depth | pipeline | images/s | ms/step | CPU ms/image | {memory} | runs |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    ratios = []
    for depth in args.depths:
        for pipeline in args.pipelines:
            results = [r for r in measurements[(depth, pipeline)] if "error" not in r]
            if not results:
                error = measurements[(depth, pipeline)][-1].get("error", "no result")
                lines.append(f"| {depth} | {pipeline} | failed: {error} | | | | |")
                continue
            speeds = sorted(r["images_per_s"] for r in results)
            spread = f"{len(results)}: {speeds[0]:.0f}-{speeds[-1]:.0f}" if len(results) > 1 else "1"
            notes = []
            if any(r.get("fallback_warning") for r in results):
                notes.append("compile fell back")
            if results[0].get("channels_last"):
                notes.append("NHWC")
            if any(r.get("cudagraph_skips") for r in results):
                notes.append(f"CUDA graphs skipped {max(r['cudagraph_skips'] for r in results)}x")
            lines.append(
                f"| {depth} | {pipeline}{' (' + ', '.join(notes) + ')' if notes else ''} | "
                f"{median_of(results, 'images_per_s'):.0f} | "
                f"{median_of(results, 'ms_per_step'):.1f} | {median_of(results, 'cpu_ms_per_image'):.2f} | "
                f"{median_of(results, 'peak_mem_mb'):.0f} | {spread} |"
            )

        def speed(pipeline: str, depth: int = depth) -> float | None:
            return median_of([r for r in measurements.get((depth, pipeline), []) if "error" not in r], "images_per_s")

        def cost(pipeline: str, depth: int = depth) -> float | None:
            return median_of(
                [r for r in measurements.get((depth, pipeline), []) if "error" not in r], "cpu_ms_per_image"
            )

        for fast, slow, label in (
            ("project", "classic", "project / classic"),
            ("project-compile", "classic", "project-compile / classic"),
            ("project-step", "classic", "project-step / classic"),
            ("project-compile", "project", "compile speed-up"),
            ("project-step", "project", "whole-step compile speed-up"),
        ):
            if speed(fast) and speed(slow):
                text = f"ResNet-{depth}: {label} = {speed(fast) / speed(slow):.2f}x images/s"
                if cost(fast) and cost(slow):
                    text += f", {cost(slow) / cost(fast):.2f}x less CPU time per image"
                ratios.append(text)
        for pipeline in ("project", "project-compile", "project-step"):
            checked = [r for r in measurements.get((depth, pipeline), []) if "syncs_per_step" in r]
            if checked:
                sites = ", ".join(f"{site} x{count}" for site, count in checked[-1]["sync_sites"]) or "none"
                ratios.append(
                    f"ResNet-{depth}: {pipeline} host syncs per timed step = "
                    f"{median_of(checked, 'syncs_per_step'):.3f} (where: {sites})"
                )
        for lightning, bare in HOST_OVERHEAD_PAIRS:
            if speed(lightning) and speed(bare):
                ratios.append(
                    f"ResNet-{depth}: Lightning overhead ({lightning} vs {bare}) = "
                    f"{100 * (speed(bare) / speed(lightning) - 1):+.1f} % time per step"
                )
    if args.host_overhead:
        ratios += host_overhead_lines(args, measurements)
    header = (
        f"device {args.device} ({machine_description(args)}), precision {args.precision}, batch {args.batch_size}, "
        f"{args.warmup} warm-up + {args.steps} timed steps, data {args.data_root or 'synthetic'}, "
        f"classic workers {args.workers}, repeats {args.repeats} (medians)"
        + (f", module.channels_last={args.channels_last}" if args.channels_last else "")
    )
    return "\n".join([header, "", *lines, "", *ratios])


def write_json(args: argparse.Namespace, measurements: dict, table: str | None) -> None:
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "measurements": [
                        {"depth": d, "pipeline": p, "runs": runs} for (d, p), runs in measurements.items()
                    ],
                    "table": table,
                },
                indent=2,
            )
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return 0
    args.load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    measurements: dict[tuple[int, str], list[dict]] = {(d, p): [] for d in args.depths for p in args.pipelines}
    for round_index in range(args.repeats):
        for depth in args.depths:
            for pipeline in args.pipelines:
                result = run_configuration(args, pipeline, depth)
                measurements[(depth, pipeline)].append(result)
                shown = f"{result['images_per_s']:.0f} images/s" if "images_per_s" in result else result["error"]
                print(
                    f"[round {round_index + 1}/{args.repeats}] ResNet-{depth} {pipeline}: {shown}",
                    file=sys.stderr,
                    flush=True,
                )
                write_json(args, measurements, table=None)  # after each one: a killed run keeps its results
    table = format_table(args, measurements)
    if args.sync_check and args.device == "cpu":
        import ddp_syncs  # bench/ddp_syncs.py

        table += "\n" + "\n".join(
            ddp_syncs.report(args.depths[0], args.batch_size, args.warmup, args.steps, args.timeout)
        )
    print(table)
    write_json(args, measurements, table)
    failed = any("error" in r for runs in measurements.values() for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
