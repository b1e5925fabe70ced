"""What a training run writes: its config, checkpoints, metrics.json (errors, steps, times, the
steady rate of a compiled run) and TensorBoard events (every scalar, steps counted as the log and
the report count them, the HPARAMS tab, the augmented inputs and the graph), on synthetic data
and on an image folder.

The runs train in this process through the Python API (``compose_config`` and ``train``); they
are tiny (depth 8, batches of 32, a few steps, a few hundred images), the smoke run shared
between tests through a module-scoped fixture (tests/conftest.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from resnet_cifar.provenance import SHORT_FORM_KEYS
from resnet_cifar.report.runs import read_run
from resnet_cifar.training.hparams import RECIPE_KEYS
from run_outputs import logged_input_grids, summaries
from tiny_runs import SMOKE_STEPS, TINY_IMAGE_FOLDER_RUN, Run, captured_log, run_training, tiny_run

SCALARS = ("train/loss", "train/err", "val/loss", "val/err", "test/loss", "test/err", "lr")


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


def test_compiled_run_reports_steady_rate_and_compile_time(tmp_path: Path) -> None:
    # 250 training images in batches of 32: steps 1-7 take 32, step 8 the epoch's last 26 (a new
    # shape, compiled again), step 9 the next epoch's first 32.
    run = tiny_run(tmp_path, "compiled", "module.compile=true", steps=9)
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
