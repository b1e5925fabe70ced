"""Determinism and resuming: the same config twice gives bit-identical weights (another seed,
other weights); the same config with more steps resumes in its folder, ``ckpt_path=`` into a new
one, both timing all their attempts and logging what is logged once per run once; a finished run
rerun keeps its results; a diverging run stops and keeps its last good checkpoint; and a run
killed (SIGKILL) mid-epoch and rerun as a command ends with the weights of one that went through.

The runs train in this process through the Python API (``compose_config`` and ``train``), but
for the killed one; they are tiny (depth 8, batches of 32, a few steps, a few hundred images) and
shared between tests through module-scoped fixtures.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.plugins.custom_scalar import layout_pb2

from commands import assert_ok, command_environment, run_command
from resnet_cifar.errors import TrainingDiverged
from run_outputs import logged_input_grids, read_json, summaries
from tiny_runs import SMOKE_STEPS, TINY_SYNTHETIC_RUN, Run, run_training, tiny_run

RESUMED_STEPS = 12
# What a run's results are, without the times it took.
RESULT_KEYS = ("test_err", "test_loss", "test_err_best_val", "val_err", "val_loss", "train_err", "train_loss", "steps")


def results(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in RESULT_KEYS}


def last_weights(run: Run) -> dict[str, torch.Tensor]:
    return torch.load(run.dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train")


# --- determinism: the same config twice gives the same results ---


@dataclass
class Twin:
    """The smoke run's config again, in another directory; its metrics and weights before it is resumed."""

    run: Run
    metrics: dict[str, Any]
    weights: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def twin(root: Path) -> Twin:
    run = tiny_run(root, "twin")
    return Twin(run, run.metrics, last_weights(run))


def test_identical_runs_give_bit_identical_weights(smoke: Run, twin: Twin) -> None:
    assert results(twin.metrics) == results(smoke.metrics)
    weights = last_weights(smoke)
    assert weights.keys() == twin.weights.keys()
    for name in weights:
        assert torch.equal(weights[name], twin.weights[name]), name


def test_another_seed_gives_other_weights(root: Path, smoke: Run) -> None:
    other = tiny_run(root, "other_seed", "seed=1")
    assert smoke.config["seed"] == 0 and other.config["seed"] == 1
    assert not torch.equal(last_weights(smoke)["net.fc.weight"], last_weights(other)["net.fc.weight"])


# --- resume: the same config with more steps, and ckpt_path= into a new directory ---


@dataclass
class Resumed:
    same_dir: Run  # the twin's config again with more steps
    rerun: Run  # and once more, when it has finished
    metrics_before_rerun: str
    new_dir: Run  # the smoke run's last.ckpt resumed with ckpt_path= into a new directory


@pytest.fixture(scope="module")
def resumed(root: Path, smoke: Run, twin: Twin) -> Resumed:
    same_dir = tiny_run(root, "twin", steps=RESUMED_STEPS)
    before = (same_dir.dir / "metrics.json").read_text()
    rerun = tiny_run(root, "twin", steps=RESUMED_STEPS)
    checkpoint = smoke.dir / "checkpoints" / "last.ckpt"
    new_dir = tiny_run(root, "resume_new_dir", f"ckpt_path={checkpoint}", steps=RESUMED_STEPS)
    return Resumed(same_dir, rerun, before, new_dir)


def test_more_steps_resume_in_the_same_directory(resumed: Resumed) -> None:
    run = resumed.same_dir
    assert "resuming from" in run.log and "last.ckpt" in run.log, run.log
    assert run.metrics["steps"] == RESUMED_STEPS
    assert run.metrics["train_err"] is not None and run.metrics["val_err"] is not None
    assert run.config["trainer"]["max_steps"] == RESUMED_STEPS
    assert run.metrics["resumed_from"] == SMOKE_STEPS
    assert len(logged_input_grids(run.dir)) == 1, "the inputs are logged once per run, not once per attempt"


def test_resumed_run_times_all_its_attempts(resumed: Resumed, smoke: Run) -> None:
    """wall_s, images_per_s and started_at count the attempt up to the checkpoint, then the resumed one."""
    metrics = resumed.new_dir.metrics
    clock = torch.load(smoke.dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["TrainingClock"]
    assert clock["images"] == SMOKE_STEPS * 32 and 0 < clock["fit_seconds"] <= smoke.metrics["wall_s"]
    assert metrics["resumed_from"] == SMOKE_STEPS and metrics["started_at"] == smoke.metrics["started_at"]
    assert metrics["wall_s"] > clock["fit_seconds"]


def test_ckpt_path_resumes_into_a_new_directory(resumed: Resumed) -> None:
    run = resumed.new_dir
    assert "resuming from" in run.log, run.log
    assert run.metrics["steps"] == RESUMED_STEPS
    # Both resumed the same weights and training state (identical runs) for the same steps. Only
    # the best checkpoint may differ: a new directory starts its own (the old one is elsewhere).
    final, resumed_final = results(run.metrics), results(resumed.same_dir.metrics)
    del final["test_err_best_val"], resumed_final["test_err_best_val"]
    assert final == resumed_final


def test_rerunning_a_finished_run_keeps_its_results(resumed: Resumed) -> None:
    assert "finished already" in resumed.rerun.log, resumed.rerun.log
    assert (resumed.rerun.dir / "metrics.json").read_text() == resumed.metrics_before_rerun


def test_one_chart_holds_train_and_val_error_once_per_run(smoke: Run, resumed: Resumed) -> None:
    (layout_summary,) = summaries(smoke.dir, "custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_summary.tensor.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["error % (train/err, val/err)"] == ["^train/err$", "^val/err$"]  # tags the run logs
    # The resumed run (two attempts, each with event files of its own) wrote it once.
    assert len(list(resumed.same_dir.dir.glob("events.out.tfevents.*"))) > 1
    assert len(summaries(resumed.same_dir.dir, "custom_scalars__config__")) == 1


# --- runs that stop: diverged, killed ---


def test_diverging_run_stops_and_keeps_its_last_good_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "diverged"
    # A checkpoint every step, so that one exists before the loss explodes a few steps in.
    overrides = ("trainer.max_steps=40", "optimizer.lr=1e8", "callbacks.model_checkpoint.every_n_train_steps=1")
    with pytest.raises(TrainingDiverged) as diverged:
        run_training(run_dir, *TINY_SYNTHETIC_RUN, *overrides)
    message = str(diverged.value)
    assert message.startswith("training diverged: the") and "became NaN or infinite" in message, message
    assert "last good checkpoint is kept" in message
    bad_step = int(message.split(" step ")[1].split(";")[0])
    assert not (run_dir / "metrics.json").exists()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] <= bad_step
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_bit_identically(tmp_path: Path) -> None:
    """The end-to-end proof of resuming: a run killed mid-epoch and rerun ends with the weights of
    a run that went through (450 training images, 15 steps an epoch, a checkpoint every 5 steps)."""
    run = (*TINY_SYNTHETIC_RUN, "data.synthetic_sizes=[500,100]", "callbacks.model_checkpoint.every_n_train_steps=5")
    run = (*run, "trainer.max_steps=40", "seed=0")
    uninterrupted, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    run_training(uninterrupted, *run)
    command = [sys.executable, "-m", "resnet_cifar.train", *run, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=command_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run_dir / "metrics.json").exists()
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < killed_at < 40 and killed_at % 5 == 0
    # Checkpoints every 5 steps, 15 steps an epoch: the kill fell mid-epoch unless at step 15 or 30.

    resumed = assert_ok(run_command(command, tmp_path, timeout=600))
    assert f"resuming from {last}" in resumed.output
    metrics = read_json(run_dir / "metrics.json")
    assert (metrics["steps"], metrics["resumed_from"]) == (40, killed_at)
    ours, theirs = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (run_dir, uninterrupted))
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for name, value in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][name], value), name
