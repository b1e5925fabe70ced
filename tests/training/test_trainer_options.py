"""Trainer options, schedulers, callbacks and checkpoints as a Lightning user sets them: from the
command line, on the default module, end to end."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from conftest import TINY_SYNTHETIC_RUN, RunCli, assert_ok, read_json
from resnet_cifar.data import CIFARDataModule
from resnet_cifar.training.module import ImageClassifier

PROBE = ("+callbacks.probe._target_=probes.RecordBatchHooks",)
CLIP = 1e-3


@pytest.fixture(scope="module")
def clipped(run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """3 optimizer steps of 2 accumulated batches each, gradients clipped by value, the simple
    profiler, and a callback that uses the gradient hooks."""
    root = tmp_path_factory.mktemp("clipped")
    completed = run_cli(
        "train",
        *TINY_SYNTHETIC_RUN,
        "trainer.max_steps=3",
        f"trainer.gradient_clip_val={CLIP}",
        "trainer.gradient_clip_algorithm=value",
        "trainer.accumulate_grad_batches=2",
        "trainer.profiler=simple",
        *PROBE,
        f"+callbacks.probe.output_dir={root}",
        f"hydra.run.dir={root / 'run'}",
        cwd=root / "cwd",
    )
    return root, assert_ok(completed).output


def test_accumulation_counts_optimizer_steps_and_the_gradient_hooks_see_every_batch(clipped) -> None:
    root, _ = clipped
    hooks = read_json(root / "hooks_rank0.json")
    batch = ["on_train_batch_start", "on_before_backward", "on_after_backward"]
    stepping = [*batch, "on_before_optimizer_step", "on_train_batch_end"]
    assert hooks["calls"] == ([*batch, "on_train_batch_end", *stepping]) * 3  # 6 batches, 3 steps
    assert read_json(root / "run" / "metrics.json")["steps"] == 3
    assert read_json(root / "run" / "metrics.json")["images_per_s"] > 0


def test_gradients_are_clipped_as_configured(clipped) -> None:
    root, _ = clipped
    hooks = read_json(root / "hooks_rank0.json")
    # Before clipping (on_before_optimizer_step) the gradients are far larger than the bound;
    # after each optimizer step (every second batch) none is.
    assert min(hooks["gradient_norms"]) > 100 * CLIP
    after_steps = hooks["largest_gradients"][1::2]
    assert len(after_steps) == 3 and max(after_steps) <= CLIP * (1 + 1e-6)


def test_the_simple_profiler_reports(clipped) -> None:
    _, output = clipped
    assert "FIT Profiler Report" in output and "run_training_batch" in output


@pytest.fixture(scope="module")
def plateau(run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs (8 steps each) and a step with ReduceLROnPlateau on val/err and the advanced profiler."""
    root = tmp_path_factory.mktemp("plateau")
    completed = run_cli(
        "train",
        *TINY_SYNTHETIC_RUN,
        "trainer.max_steps=17",
        "scheduler=plateau",
        "scheduler.patience=0",
        "trainer.profiler=advanced",
        f"hydra.run.dir={root / 'run'}",
        cwd=root / "cwd",
    )
    assert "Profiler Report" in assert_ok(completed).output
    return root / "run"


def test_reduce_on_plateau_is_stepped_once_per_epoch_on_the_validation_error(plateau: Path) -> None:
    checkpoint = torch.load(plateau / "checkpoints" / "last.ckpt", weights_only=True)
    (scheduler,) = checkpoint["lr_schedulers"]
    assert scheduler["last_epoch"] == 2  # stepped after each of the two epochs' validation
    val_errors = {round(scheduler["best"], 4)}
    assert val_errors <= {round(float(e), 4) for e in _logged(plateau, "val/err")}


def _logged(run_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


def test_a_checkpoint_loads_with_load_from_checkpoint_and_tests_as_the_run_did(plateau: Path) -> None:
    module = ImageClassifier.load_from_checkpoint(plateau / "checkpoints" / "last.ckpt")
    data = module.hparams.run_config["data"]
    datamodule = CIFARDataModule(**{key: value for key, value in data.items() if key != "_target_"})
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    assert results["test/err"] == pytest.approx(read_json(plateau / "metrics.json")["test_err"], abs=1e-4)
