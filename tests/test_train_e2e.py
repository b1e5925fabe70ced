"""The train and evaluate commands end to end, as a user runs them: one process per command.

Runs are tiny (depth 8, batches of 32, a few steps, a few hundred images) and shared between
tests through module-scoped fixtures.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import (
    TINY_IMAGE_FOLDER_RUN,
    TINY_SYNTHETIC_RUN,
    RunCli,
    assert_ok,
    describe,
    logged_input_grids,
    read_json,
)
from resnet_cifar.provenance import SHORT_FORM_KEYS
from resnet_cifar.training.hparams import RECIPE_KEYS

SMOKE_STEPS = 6
RESUMED_STEPS = 12
SCALARS = ("train/loss", "train/err", "val/loss", "val/err", "test/loss", "test/err", "lr")
# What a run's results are, without the times it took.
RESULT_KEYS = ("test_err", "test_loss", "test_err_best_val", "val_err", "val_loss", "train_err", "train_loss", "steps")


@dataclass
class Run:
    completed: subprocess.CompletedProcess
    dir: Path
    cwd: Path

    @property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.dir / "metrics.json")

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.dir / ".hydra" / "config.yaml").read_text())


def train(run_cli: RunCli, root: Path, name: str, *overrides: str, steps: int = SMOKE_STEPS) -> Run:
    """A tiny synthetic training run in ``root/name``, started from the empty folder ``root/cwd``."""
    run_dir, cwd = root / name, root / "cwd"
    completed = run_cli(
        "train", *TINY_SYNTHETIC_RUN, f"trainer.max_steps={steps}", *overrides, f"hydra.run.dir={run_dir}", cwd=cwd
    )
    return Run(assert_ok(completed), run_dir, cwd)


def results(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in RESULT_KEYS}


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(path for path in sweep_dir.iterdir() if path.is_dir())


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def smoke(run_cli: RunCli, root: Path) -> Run:
    return train(run_cli, root, "smoke")


# --- (1) a smoke run writes its config, TensorBoard scalars, checkpoints and metrics.json ---


def test_smoke_run_writes_config_checkpoint_and_nothing_in_the_working_directory(smoke: Run) -> None:
    assert smoke.config["model"]["depth"] == 8
    assert smoke.config["trainer"]["max_steps"] == SMOKE_STEPS
    # The precision it trained in, not the resolver: the report may read it on another machine.
    assert smoke.config["trainer"]["precision"] == "32-true"
    assert sorted(path.name for path in (smoke.dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert list(smoke.cwd.iterdir()) == [], "nothing may land in the working directory (e.g. outputs/)"


def test_smoke_run_metrics_json(smoke: Run) -> None:
    metrics = smoke.metrics
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


def test_compiled_run_reports_the_steady_rate_and_its_compile_time(run_cli: RunCli, root: Path) -> None:
    # 250 training images in batches of 32: steps 1-7 take 32, step 8 the epoch's last 26 (a new
    # shape, compiled again), step 9 the next epoch's first 32.
    run = train(run_cli, root, "compiled", "module.compile=true", steps=9)
    metrics = run.metrics
    clock = torch.load(run.dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["TrainingClock"]
    assert clock["images"] == 8 * 32 + 26 and clock["compile_images"] == 32 + 26
    assert 0 < metrics["compile_s"] < metrics["train_s"] < metrics["wall_s"]
    # The steady rate: the 7 other steps' 224 images over the training time without those two steps.
    steady_images = clock["images"] - clock["compile_images"]
    assert metrics["images_per_s"] == pytest.approx(
        steady_images / (metrics["train_s"] - metrics["compile_s"]), rel=0.01
    )


def test_smoke_run_tensorboard_scalars(smoke: Run) -> None:
    events = EventAccumulator(str(smoke.dir), size_guidance={"scalars": 0})
    events.Reload()
    logged = set(events.Tags()["scalars"])
    assert set(SCALARS) <= logged, f"missing {set(SCALARS) - logged}; logged: {sorted(logged)}"
    test_err = events.Scalars("test/err")
    assert test_err[-1].value == pytest.approx(smoke.metrics["test_err"], abs=1e-4)
    assert [event.value for event in events.Scalars("lr")][0] == pytest.approx(0.1)


def summaries(run_dir: Path, tag: str) -> list[Any]:
    """Every summary value tagged ``tag`` in all of the run's event files."""
    values = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            values += [value for value in event.summary.value if value.tag == tag]
    return values


def test_hparams_tab_gets_a_short_flat_set_and_every_override(smoke: Run) -> None:
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


def test_custom_scalars_put_train_and_val_error_on_one_chart_once_per_run(smoke: Run, resumed: Resumed) -> None:
    (layout_summary,) = summaries(smoke.dir, "custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_summary.tensor.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["error % (train/err, val/err)"] == ["^train/err$", "^val/err$"]  # tags the run logs
    # The resumed run (two attempts, each with event files of its own) wrote it once.
    assert len(list(resumed.same_dir.dir.glob("events.out.tfevents.*"))) > 1
    assert len(summaries(resumed.same_dir.dir, "custom_scalars__config__")) == 1


def test_smoke_run_shows_its_augmented_inputs_and_graph_in_tensorboard(smoke: Run) -> None:
    (grid,) = logged_input_grids(smoke.dir)
    # 32 images of the first batch (all of it) in a labelled grid, with their colours back.
    assert grid.width >= 500 and len(grid.convert("RGB").getcolors(maxcolors=1_000_000)) > 1000
    events = EventAccumulator(str(smoke.dir))
    events.Reload()
    operations = {node.op for node in events.Graph().node}
    assert {"aten::_convolution", "aten::batch_norm", "aten::linear"} <= operations, sorted(operations)


# --- (2) training on files: the fake image folder through data.root ---


def test_training_on_an_image_folder(run_cli: RunCli, root: Path, image_folder_root: Path) -> None:
    run_dir = root / "image_folder"
    completed = run_cli(
        "train",
        *TINY_IMAGE_FOLDER_RUN,
        f"data.root={image_folder_root}",
        "trainer.max_steps=3",
        f"hydra.run.dir={run_dir}",
        cwd=root / "cwd",
    )
    assert_ok(completed)
    # 300 training images: 250 after holding out 50 for validation; 100 test images.
    assert "300 train / 100 test images in 10 classes" in completed.output, describe(completed)
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["steps"] == 3
    assert 0 <= metrics["test_err"] <= 100
    assert (image_folder_root / "cifar10-uint8.pt").is_file(), "the decoded images are cached"


# --- (3) evaluate the final checkpoint ---


def test_evaluate_last_checkpoint_gives_the_runs_test_error(run_cli: RunCli, smoke: Run, tmp_path: Path) -> None:
    checkpoint = smoke.dir / "checkpoints" / "last.ckpt"
    completed = assert_ok(run_cli("evaluate", f"ckpt_path={checkpoint}", cwd=tmp_path / "cwd"))
    test_err = smoke.metrics["test_err"]
    assert f"test error {test_err:.2f} %" in completed.stdout, describe(completed)
    evaluation = read_json(checkpoint.with_suffix(".eval.json"))
    assert evaluation["test_err"] == pytest.approx(test_err, abs=1e-6)
    assert evaluation["step"] == SMOKE_STEPS
    assert list((tmp_path / "cwd").iterdir()) == []


# --- (7) determinism: the same command twice gives the same results ---


@dataclass
class Twin:
    """The smoke run's command again, in another directory; its metrics and weights before it is resumed."""

    run: Run
    metrics: dict[str, Any]
    weights: dict[str, torch.Tensor]


def last_weights(run: Run) -> dict[str, torch.Tensor]:
    return torch.load(run.dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def twin(run_cli: RunCli, root: Path) -> Twin:
    run = train(run_cli, root, "twin")
    return Twin(run, run.metrics, last_weights(run))


def test_identical_runs_give_bit_identical_weights_and_results(smoke: Run, twin: Twin) -> None:
    assert results(twin.metrics) == results(smoke.metrics)
    weights = last_weights(smoke)
    assert weights.keys() == twin.weights.keys()
    for name in weights:
        assert torch.equal(weights[name], twin.weights[name]), name


def test_another_seed_gives_other_weights(run_cli: RunCli, root: Path, smoke: Run) -> None:
    other = train(run_cli, root, "other_seed", "seed=1")
    assert smoke.config["seed"] == 0 and other.config["seed"] == 1
    assert not torch.equal(last_weights(smoke)["net.fc.weight"], last_weights(other)["net.fc.weight"])


# --- (4) resume: the same command with more steps, and ckpt_path= into a new directory ---


@dataclass
class Resumed:
    same_dir: Run  # the twin's command again with more steps
    rerun: Run  # and once more, when it has finished
    metrics_before_rerun: str
    new_dir: Run  # the smoke run's last.ckpt resumed with ckpt_path= into a new directory


@pytest.fixture(scope="module")
def resumed(run_cli: RunCli, root: Path, smoke: Run, twin: Twin) -> Resumed:
    same_dir = train(run_cli, root, "twin", steps=RESUMED_STEPS)
    before = (same_dir.dir / "metrics.json").read_text()
    rerun = train(run_cli, root, "twin", steps=RESUMED_STEPS)
    checkpoint = smoke.dir / "checkpoints" / "last.ckpt"
    new_dir = train(run_cli, root, "resume_new_dir", f"ckpt_path={checkpoint}", steps=RESUMED_STEPS)
    return Resumed(same_dir, rerun, before, new_dir)


def test_rerunning_with_more_steps_resumes_in_the_same_directory(resumed: Resumed) -> None:
    run = resumed.same_dir
    assert "resuming from" in run.completed.output and "last.ckpt" in run.completed.output, describe(run.completed)
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
    assert "resuming from" in run.completed.output, describe(run.completed)
    assert run.metrics["steps"] == RESUMED_STEPS
    # Both resumed the same weights and training state (identical runs) for the same steps. Only
    # the best checkpoint may differ: a new directory starts its own (the old one is elsewhere).
    final, resumed_final = results(run.metrics), results(resumed.same_dir.metrics)
    del final["test_err_best_val"], resumed_final["test_err_best_val"]
    assert final == resumed_final


def test_rerunning_a_finished_run_keeps_its_results(resumed: Resumed) -> None:
    assert "finished already" in resumed.rerun.completed.output, describe(resumed.rerun.completed)
    assert (resumed.rerun.dir / "metrics.json").read_text() == resumed.metrics_before_rerun


# --- (5) a multirun over depths ---


def test_multirun_over_depths(run_cli: RunCli, root: Path) -> None:
    sweep_dir = root / "sweep"
    completed = run_cli(
        "train",
        "-m",
        *TINY_SYNTHETIC_RUN,
        "trainer.max_steps=2",
        "model.depth=8,14",
        # A value with "/" and names over 255 bytes: each job still gets one flat directory.
        f"data.root={root}/unused",
        f"+tags.note={'x' * 250}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=root / "cwd",
    )
    assert_ok(completed)
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 2, jobs
    assert all(len(job.name) <= 200 and (job / "metrics.json").is_file() for job in jobs)
    depths = sorted(yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["model"]["depth"] for job in jobs)
    assert depths == [8, 14]
    for job in jobs:
        assert read_json(job / "metrics.json")["steps"] == 2
    assert list((root / "cwd").iterdir()) == []
