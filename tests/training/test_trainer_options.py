"""Trainer options, schedulers, callbacks and checkpoints as a Lightning user sets them: as
command-line overrides of the default module's run, trained in this process through the Python
API (``compose_config`` and ``train``), end to end."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.profilers import AdvancedProfiler, SimpleProfiler
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from resnet_cifar.data import CIFARDataModule
from resnet_cifar.train import compose_config
from resnet_cifar.training.build import build_trainer
from resnet_cifar.training.module import ImageClassifier
from run_outputs import read_json
from tiny_runs import TINY_SYNTHETIC_RUN, run_training

PROBE = ("+callbacks.probe._target_=probes.RecordBatchHooks",)
CLIP = 1e-3


@pytest.fixture(scope="module")
def clipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 optimizer steps of 2 accumulated batches each, gradients clipped by value, the simple
    profiler, and a callback that uses the gradient hooks: its record's folder and the run's."""
    root = tmp_path_factory.mktemp("clipped")
    run_training(
        root / "run",
        *TINY_SYNTHETIC_RUN,
        "trainer.max_steps=3",
        f"trainer.gradient_clip_val={CLIP}",
        "trainer.gradient_clip_algorithm=value",
        "trainer.accumulate_grad_batches=2",
        "trainer.profiler=simple",
        *PROBE,
        f"+callbacks.probe.output_dir={root}",
    )
    return root, root / "run"


def test_accumulated_batches_make_one_step_all_hooks_called(clipped) -> None:
    root, run_dir = clipped
    hooks = read_json(root / "hooks_rank0.json")
    batch = ["on_train_batch_start", "on_before_backward", "on_after_backward"]
    stepping = [*batch, "on_before_optimizer_step", "on_train_batch_end"]
    assert hooks["calls"] == ([*batch, "on_train_batch_end", *stepping]) * 3  # 6 batches, 3 steps
    assert read_json(run_dir / "metrics.json")["steps"] == 3
    assert read_json(run_dir / "metrics.json")["images_per_s"] > 0


def test_gradients_are_clipped_as_configured(clipped) -> None:
    root, _ = clipped
    hooks = read_json(root / "hooks_rank0.json")
    # Before clipping (on_before_optimizer_step) the gradients are far larger than the bound;
    # after each optimizer step (every second batch) none is.
    assert min(hooks["gradient_norms"]) > 100 * CLIP
    after_steps = hooks["largest_gradients"][1::2]
    assert len(after_steps) == 3 and max(after_steps) <= CLIP * (1 + 1e-6)


@pytest.mark.parametrize("name,profiler", [("simple", SimpleProfiler), ("advanced", AdvancedProfiler)])
def test_the_profiler_option_reaches_the_runs_trainer(name: str, profiler: type, tmp_path: Path) -> None:
    """trainer.profiler=<name> gives the run's Trainer Lightning's profiler of that name (the runs
    above train with each); what the profiler reports is Lightning's."""
    cfg = compose_config([*TINY_SYNTHETIC_RUN, f"trainer.profiler={name}"], output_dir=tmp_path)
    assert isinstance(build_trainer(cfg).profiler, profiler)


@pytest.fixture(scope="module")
def plateau(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs (8 steps each) and a step with ReduceLROnPlateau on val/err and the advanced profiler."""
    run_dir = tmp_path_factory.mktemp("plateau") / "run"
    run_training(
        run_dir,
        *TINY_SYNTHETIC_RUN,
        "trainer.max_steps=17",
        "scheduler=plateau",
        "scheduler.patience=0",
        "trainer.profiler=advanced",
    )
    return run_dir


def logged(run_dir: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


def test_plateau_steps_once_per_epoch_on_the_val_error(plateau: Path) -> None:
    checkpoint = torch.load(plateau / "checkpoints" / "last.ckpt", weights_only=True)
    (scheduler,) = checkpoint["lr_schedulers"]
    assert scheduler["last_epoch"] == 2  # stepped after each of the two epochs' validation
    val_errors = {round(scheduler["best"], 4)}
    assert val_errors <= {round(float(e), 4) for e in logged(plateau, "val/err")}


def test_load_from_checkpoint_tests_as_the_run_did(plateau: Path) -> None:
    module = ImageClassifier.load_from_checkpoint(plateau / "checkpoints" / "last.ckpt")
    data = torch.load(plateau / "checkpoints" / "last.ckpt", weights_only=True)["datamodule_hyper_parameters"]
    datamodule = CIFARDataModule(**data)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    assert results["test/err"] == pytest.approx(read_json(plateau / "metrics.json")["test_err"], abs=1e-4)
