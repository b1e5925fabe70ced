"""What a training run writes (config, checkpoints, metrics.json, TensorBoard), that it is
deterministic, and how it resumes.

The runs train in this process through the Python API (``compose_config`` and ``train``); the
commands themselves (``python -m resnet_cifar.train``, a multirun, ``python -m
resnet_cifar.evaluate``) run as processes at the end. Runs are tiny (depth 8, batches of 32, a
few steps, a few hundred images) and shared between tests through module-scoped fixtures.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from commands import assert_ok, command_environment, describe, run_command
from resnet_cifar.errors import TrainingDiverged
from resnet_cifar.provenance import SHORT_FORM_KEYS
from resnet_cifar.report.runs import read_run
from resnet_cifar.training.hparams import RECIPE_KEYS
from run_outputs import logged_input_grids, read_json, summaries
from tiny_runs import TINY_IMAGE_FOLDER_RUN, TINY_SYNTHETIC_RUN, captured_log, run_training

SMOKE_STEPS = 6
RESUMED_STEPS = 12
SCALARS = ("train/loss", "train/err", "val/loss", "val/err", "test/loss", "test/err", "lr")
# What a run's results are, without the times it took.
RESULT_KEYS = ("test_err", "test_loss", "test_err_best_val", "val_err", "val_loss", "train_err", "train_loss", "steps")


@dataclass
class Run:
    dir: Path
    returned: dict[str, Any]  # what train() returned
    log: str  # what it logged

    @property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.dir / "metrics.json")

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.dir / ".hydra" / "config.yaml").read_text())


def train(root: Path, name: str, *overrides: str, steps: int = SMOKE_STEPS) -> Run:
    """A tiny synthetic training run in ``root/name``, trained in this process."""
    with captured_log() as log:
        returned = run_training(root / name, *TINY_SYNTHETIC_RUN, f"trainer.max_steps={steps}", *overrides)
    return Run(root / name, returned, "\n".join(log))


def results(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in RESULT_KEYS}


def last_weights(run: Run) -> dict[str, torch.Tensor]:
    return torch.load(run.dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def smoke(root: Path) -> Run:
    return train(root, "smoke")


# --- a run writes its config, checkpoints, metrics.json and TensorBoard events ---


def test_run_writes_its_trained_config_and_checkpoints(smoke: Run) -> None:
    assert smoke.config["model"]["depth"] == 8
    assert smoke.config["trainer"]["max_steps"] == SMOKE_STEPS
    # The precision it trained in, not the resolver: the report may read it on another machine.
    assert smoke.config["trainer"]["precision"] == "32-true"
    assert sorted(path.name for path in (smoke.dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_metrics_json_holds_errors_steps_and_times(smoke: Run) -> None:
    metrics = smoke.metrics
    assert metrics == smoke.returned
    for key in ("test_err", "val_err", "train_err", "test_err_best_val"):
        assert isinstance(metrics[key], float) and 0 <= metrics[key] <= 100, (key, metrics)
    assert metrics["steps"] == SMOKE_STEPS
    assert metrics["resumed_from"] is None
    assert metrics["wall_s"] > 0
    assert metrics["images_per_s"] > 0
    assert 0 < metrics["compile_s"] < metrics["train_s"] < metrics["wall_s"]
    started, finished = (datetime.fromisoformat(metrics[key]) for key in ("started_at", "finished_at"))
    assert started.tzinfo is not None and finished.tzinfo is not None
    assert started <= finished


def test_compiled_run_reports_steady_rate_and_compile_time(root: Path) -> None:
    # 250 training images in batches of 32: steps 1-7 take 32, step 8 the epoch's last 26 (a new
    # shape, compiled again), step 9 the next epoch's first 32.
    run = train(root, "compiled", "module.compile=true", steps=9)
    metrics = run.metrics
    clock = torch.load(run.dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["TrainingClock"]
    assert clock["images"] == 8 * 32 + 26 and clock["compile_images"] == 32 + 26
    assert 0 < metrics["compile_s"] < metrics["train_s"] < metrics["wall_s"]
    # The steady rate: the 7 other steps' 224 images over the training time without those two steps.
    steady_images = clock["images"] - clock["compile_images"]
    assert metrics["images_per_s"] == pytest.approx(
        steady_images / (metrics["train_s"] - metrics["compile_s"]), rel=0.01
    )


def test_tensorboard_gets_every_scalar(smoke: Run) -> None:
    events = EventAccumulator(str(smoke.dir), size_guidance={"scalars": 0})
    events.Reload()
    logged = set(events.Tags()["scalars"])
    assert set(SCALARS) <= logged, f"missing {set(SCALARS) - logged}; logged: {sorted(logged)}"
    test_err = events.Scalars("test/err")
    assert test_err[-1].value == pytest.approx(smoke.metrics["test_err"], abs=1e-4)
    assert [event.value for event in events.Scalars("lr")][0] == pytest.approx(0.1)


def test_tensorboard_the_log_and_the_report_count_steps_alike(smoke: Run) -> None:
    """Optimizer steps done: the validation after the last step is at that step in all three."""
    validated = [int(step) for step in re.findall(r"validation at step (\d+)", smoke.log)]
    events = EventAccumulator(str(smoke.dir), size_guidance={"scalars": 0})
    events.Reload()
    assert [event.step for event in events.Scalars("val/err")] == validated
    assert validated == [smoke.metrics["steps"]] == [SMOKE_STEPS]
    assert [step for step, _ in read_run(smoke.dir).curves["val/err"]] == validated
    assert [event.step for event in events.Scalars("train/err")] == validated  # each epoch's, at its end
    # log_every_n_steps=2: the losses of steps 2, 4 and 6.
    assert [event.step for event in events.Scalars("train/loss")] == list(range(2, SMOKE_STEPS + 1, 2))


def test_hparams_tab_gets_the_recipe_and_every_override(smoke: Run) -> None:
    (start,) = summaries(smoke.dir, "_hparams_/session_start_info")
    hparams = HParamsPluginData.FromString(start.metadata.plugin_data.content).session_start_info.hparams
    overridden = {
        "experiment",
        "data.eval_batch_size",
        "data.val_size",
        "trainer.log_every_n_steps",
        "data.synthetic_sizes",
    }
    assert set(hparams) == set(RECIPE_KEYS) | overridden | set(SHORT_FORM_KEYS), sorted(hparams)
    assert hparams["experiment"].string_value == "smoke"
    assert hparams["model.depth"].number_value == 8 and hparams["model.residual"].string_value == "true"
    assert hparams["trainer.max_steps"].number_value == SMOKE_STEPS
    assert hparams["scheduler.milestones"].string_value == "[10, 15]"
    assert hparams["data.synthetic_sizes"].string_value == "[300, 100]"
    (experiment,) = summaries(smoke.dir, "_hparams_/experiment")
    columns = HParamsPluginData.FromString(experiment.metadata.plugin_data.content).experiment
    assert {info.name for info in columns.hparam_infos} == set(hparams)
    metrics = {info.name.tag for info in columns.metric_infos}
    assert metrics == {"hp/test_err", "hp/test_err_best_val", "hp/val_err", "hp/train_err"}


def test_one_chart_holds_train_and_val_error_once_per_run(smoke: Run, resumed: Resumed) -> None:
    (layout_summary,) = summaries(smoke.dir, "custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_summary.tensor.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["error % (train/err, val/err)"] == ["^train/err$", "^val/err$"]  # tags the run logs
    # The resumed run (two attempts, each with event files of its own) wrote it once.
    assert len(list(resumed.same_dir.dir.glob("events.out.tfevents.*"))) > 1
    assert len(summaries(resumed.same_dir.dir, "custom_scalars__config__")) == 1


def test_tensorboard_shows_augmented_inputs_and_graph(smoke: Run) -> None:
    (grid,) = logged_input_grids(smoke.dir)
    # 32 images of the first batch (all of it) in a labelled grid, with their colours back.
    assert grid.width >= 500 and len(grid.convert("RGB").getcolors(maxcolors=1_000_000)) > 1000
    events = EventAccumulator(str(smoke.dir))
    events.Reload()
    operations = {node.op for node in events.Graph().node}
    assert {"aten::_convolution", "aten::batch_norm", "aten::linear"} <= operations, sorted(operations)


def test_training_on_an_image_folder(tmp_path: Path, image_folder_root: Path) -> None:
    with captured_log() as log:
        metrics = run_training(
            tmp_path / "run", *TINY_IMAGE_FOLDER_RUN, f"data.root={image_folder_root}", "trainer.max_steps=3"
        )
    # 300 training images: 250 after holding out 50 for validation; 100 test images.
    assert any("300 train / 100 test images in 10 classes" in message for message in log), log
    assert metrics["steps"] == 3
    assert 0 <= metrics["test_err"] <= 100
    assert (image_folder_root / "cifar10-uint8.pt").is_file(), "the decoded images are cached"


# --- determinism: the same config twice gives the same results ---


@dataclass
class Twin:
    """The smoke run's config again, in another directory; its metrics and weights before it is resumed."""

    run: Run
    metrics: dict[str, Any]
    weights: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def twin(root: Path) -> Twin:
    run = train(root, "twin")
    return Twin(run, run.metrics, last_weights(run))


def test_identical_runs_give_bit_identical_weights(smoke: Run, twin: Twin) -> None:
    assert results(twin.metrics) == results(smoke.metrics)
    weights = last_weights(smoke)
    assert weights.keys() == twin.weights.keys()
    for name in weights:
        assert torch.equal(weights[name], twin.weights[name]), name


def test_another_seed_gives_other_weights(root: Path, smoke: Run) -> None:
    other = train(root, "other_seed", "seed=1")
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
    same_dir = train(root, "twin", steps=RESUMED_STEPS)
    before = (same_dir.dir / "metrics.json").read_text()
    rerun = train(root, "twin", steps=RESUMED_STEPS)
    checkpoint = smoke.dir / "checkpoints" / "last.ckpt"
    new_dir = train(root, "resume_new_dir", f"ckpt_path={checkpoint}", steps=RESUMED_STEPS)
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


# --- the commands, as processes ---


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


def test_train_command_writes_its_run_and_nothing_else(tmp_path: Path) -> None:
    run_dir, cwd = tmp_path / "run", tmp_path / "cwd"
    command = [sys.executable, "-m", "resnet_cifar.train", *TINY_SYNTHETIC_RUN, "trainer.max_steps=2"]
    assert_ok(run_command([*command, f"hydra.run.dir={run_dir}"], cwd))
    assert read_json(run_dir / "metrics.json")["steps"] == 2
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    assert list(cwd.iterdir()) == [], "nothing may land in the working directory (e.g. outputs/)"

    # The evaluate command tests the run's last checkpoint as the run did.
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    completed = assert_ok(run_command([sys.executable, "-m", "resnet_cifar.evaluate", f"ckpt_path={checkpoint}"], cwd))
    test_err = read_json(run_dir / "metrics.json")["test_err"]
    assert f"test error {test_err:.2f} %" in completed.stdout, describe(completed)
    evaluation = read_json(checkpoint.with_suffix(".eval.json"))
    assert evaluation["test_err"] == pytest.approx(test_err, abs=1e-6)
    assert evaluation["step"] == 2
    assert list(cwd.iterdir()) == []


def test_multirun_over_depths(tmp_path: Path) -> None:
    sweep_dir, cwd = tmp_path / "sweep", tmp_path / "cwd"
    command = [
        *(sys.executable, "-m", "resnet_cifar.train", "-m"),
        *TINY_SYNTHETIC_RUN,
        "trainer.max_steps=2",
        "model.depth=8,14",
        # A value with "/" and names over 255 bytes: each job still gets one flat directory.
        f"data.root={tmp_path}/unused",
        f"+tags.note={'x' * 250}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    assert_ok(run_command(command, cwd))
    jobs = sorted(path for path in sweep_dir.iterdir() if path.is_dir())
    assert len(jobs) == 2, jobs
    assert all(len(job.name) <= 200 and (job / "metrics.json").is_file() for job in jobs)
    depths = sorted(yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["model"]["depth"] for job in jobs)
    assert depths == [8, 14]
    for job in jobs:
        assert read_json(job / "metrics.json")["steps"] == 2
    assert list(cwd.iterdir()) == []
