"""The ``project`` pipelines of bench/throughput.py: the project's own training path, timed.

The composed training config builds the CIFARDataModule, the ImageClassifier and the Lightning
Trainer with every configured callback and the TensorBoard logger, as a training run does;
validation is off. A callback inserted first times the steps; with ``--sync-check`` on a GPU it
also counts the host syncs of the timed steps and where they happen.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import warnings
from pathlib import Path

from throughput_clock import Clock, cudagraph_skips, peak_memory_mb
from throughput_pipelines import compose_config


def measure_project(args: argparse.Namespace, compile_scope: str | None) -> dict:
    """One measurement of the project's pipeline (compiled as ``compile_scope`` says)."""
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
