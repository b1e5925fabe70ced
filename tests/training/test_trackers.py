"""Experiment trackers chosen by config (logger=...): MLflow (a real SQLite store, read back with
MLflow's client and through `mlflow ui`), W&B offline (its run files read back), the CSV file;
each tracker gets the run's hyper-parameters, curves and final errors, one run per job.

A sweep runs as the command (``train -m``) where the sweep is the point: one MLflow experiment
per sweep with one run per job, jobs at once sharing a new store, a DDP job logging from rank 0
alone. Single runs (a resumed run, W&B's runs, a tracker that is not installed) train in this
process through the Python API (``compose_config`` and ``train``). Runs are tiny (4 steps).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from commands import assert_ok, describe, run_cli, run_command
from resnet_cifar.cli import usage_error_in
from resnet_cifar.training.trackers import run_group
from run_outputs import read_json, summaries
from tiny_runs import TINY_SYNTHETIC_RUN, captured_log, run_training

STEPS = 4
TRACKED_RUN = (
    *TINY_SYNTHETIC_RUN,
    f"trainer.max_steps={STEPS}",
    "scheduler.milestones=[2,3]",
    "~callbacks.progress_bar",
    "~callbacks.input_preview",
)
RESULTS = ("test_err", "test_err_best_val", "val_err", "train_err")


@dataclass
class Sweep:
    dir: Path
    cwd: Path

    @property
    def jobs(self) -> list[Path]:
        return sorted(metrics.parent for metrics in self.dir.glob("*/metrics.json"))

    @property
    def store(self) -> str:
        """The default MLflow store: outputs/mlflow.db in the working directory."""
        return f"sqlite:///{self.cwd}/outputs/mlflow.db"


def sweep(root: Path, *overrides: str) -> Sweep:
    """A tiny sweep into ``root/sweep``, started from the empty folder ``root/cwd``."""
    result = Sweep(root / "sweep", root / "cwd")
    assert_ok(run_cli("train", "-m", *TRACKED_RUN, *overrides, f"hydra.sweep.dir={result.dir}", cwd=result.cwd))
    assert len(result.jobs) == 2
    return result


def tensorboard_hparams(job: Path) -> dict[str, Any]:
    """The hyper-parameters of a job's TensorBoard HPARAMS tab, as numbers or text."""
    (start,) = summaries(job, "_hparams_/session_start_info")
    hparams = HParamsPluginData.FromString(start.metadata.plugin_data.content).session_start_info.hparams
    return {
        key: value.number_value if value.HasField("number_value") else value.string_value
        for key, value in hparams.items()
    }


def tensorboard_curve(job: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(job))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def same_curve(logged: list[tuple[int, float]], shown: list[tuple[int, float]]) -> bool:
    """The same steps and values (TensorBoard keeps 32-bit floats)."""
    return [step for step, _ in logged] == [step for step, _ in shown] and [
        value for _, value in logged
    ] == pytest.approx([value for _, value in shown], rel=1e-6)


def same_values(logged: dict[str, str], shown: dict[str, Any]) -> bool:
    """A tracker's values (as text) are TensorBoard's (numbers or text)."""
    return logged.keys() == shown.keys() and all(
        float(logged[key]) == value if isinstance(value, float) else logged[key] == value
        for key, value in shown.items()
    )


# --- MLflow: a 2-job sweep of jobs at once (one DDP with 2 processes), TensorBoard and the CSV file beside ---


@pytest.fixture(scope="module")
def mlflow_sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """Both jobs start at once (the parallel launcher) and so create the new SQLite store and the
    sweep's experiment together; one of them is a DDP job of 2 processes."""
    return sweep(
        tmp_path_factory.mktemp("mlflow"),
        "logger=[tensorboard,mlflow,csv]",
        "trainer=cpu,ddp",
        "trainer.accelerator=cpu",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
    )


def mlflow_runs(store: str, experiment_name: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(store)
    names = [experiment.name for experiment in client.search_experiments()]
    assert names.count(experiment_name) == 1, names
    return client.search_runs([client.get_experiment_by_name(experiment_name).experiment_id])


def metric_history(store: str, run: Any, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return sorted(
        (metric.step, metric.value) for metric in MlflowClient(store).get_metric_history(run.info.run_id, key)
    )


@pytest.mark.slow
def test_a_sweep_is_one_mlflow_experiment_one_run_per_job(mlflow_sweep: Sweep) -> None:
    runs = mlflow_runs(mlflow_sweep.store, str(mlflow_sweep.dir))  # named after the sweep's folder
    assert sorted(run.data.tags["run_dir"] for run in runs) == [str(job) for job in mlflow_sweep.jobs]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.info.run_name == Path(run.data.tags["run_dir"]).name


@pytest.mark.slow
def test_each_mlflow_run_has_its_jobs_params_curves_results(mlflow_sweep: Sweep) -> None:
    for run in mlflow_runs(mlflow_sweep.store, str(mlflow_sweep.dir)):
        job = Path(run.data.tags["run_dir"])
        assert same_values(run.data.params, tensorboard_hparams(job))  # the curated set, as TensorBoard's HPARAMS
        for curve in ("val/err", "train/loss", "lr"):
            assert same_curve(metric_history(mlflow_sweep.store, run, curve), tensorboard_curve(job, curve)), curve
        metrics = read_json(job / "metrics.json")
        assert {key: run.data.metrics[key] for key in RESULTS} == {key: metrics[key] for key in RESULTS}
        assert run.data.metrics["test/err"] == metrics["test_err"]


@pytest.mark.slow
def test_a_ddp_job_logs_to_mlflow_from_rank_0_alone(mlflow_sweep: Sweep) -> None:
    (ddp,) = [
        run
        for run in mlflow_runs(mlflow_sweep.store, str(mlflow_sweep.dir))
        if run.data.params["trainer.devices"] == "2"
    ]
    steps = [step for step, _ in metric_history(mlflow_sweep.store, ddp, "train/loss")]
    assert steps and len(steps) == len(set(steps))  # one value per step: a second rank would repeat them


@pytest.mark.slow
def test_the_csv_logger_writes_every_curve_in_the_run_directory(mlflow_sweep: Sweep) -> None:
    import csv

    for job in mlflow_sweep.jobs:
        rows = list(csv.DictReader((job / "csv" / "metrics.csv").open()))
        val_err = [(int(row["step"]), float(row["val/err"])) for row in rows if row["val/err"]]
        assert same_curve(val_err, tensorboard_curve(job, "val/err"))
        (final,) = [row for row in rows if row["test_err"]]
        assert float(final["test_err"]) == read_json(job / "metrics.json")["test_err"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_json(url: str, body: dict | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_mlflow_ui_on_the_store_lists_the_sweeps_runs(mlflow_sweep: Sweep, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "ui.log").open("w")
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            mlflow_sweep.store,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no background job workers
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:  # the server starts in a few seconds to a minute on a busy 2-core machine
            assert ui.poll() is None, (tmp_path / "ui.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "mlflow ui did not answer: " + (tmp_path / "ui.log").read_text()
                time.sleep(1)
        with urllib.request.urlopen(base, timeout=30) as response:
            assert response.status == 200 and b"<html" in response.read().lower()  # the UI's page
        found = http_json(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={urllib.parse.quote(str(mlflow_sweep.dir))}"
        )
        runs = http_json(
            f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [found["experiment"]["experiment_id"]]}
        )["runs"]
        assert sorted(run["info"]["run_name"] for run in runs) == [job.name for job in mlflow_sweep.jobs]
        assert {run["info"]["status"] for run in runs} == {"FINISHED"}
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_jobs_of_a_parallel_sweep_share_a_new_sqlite_store(mlflow_sweep: Sweep) -> None:
    """Two jobs at once create the store and the experiment: both succeed, each with its own run."""
    runs = mlflow_runs(mlflow_sweep.store, str(mlflow_sweep.dir))
    assert sorted(run.data.params["trainer.devices"] for run in runs) == ["1", "2"]
    assert len({run.info.run_id for run in runs}) == 2
    for run in runs:
        metrics = read_json(Path(run.data.tags["run_dir"]) / "metrics.json")
        assert run.info.status == "FINISHED" and run.data.metrics["test_err"] == metrics["test_err"]


@pytest.mark.parametrize("stopped", ["killed", "crashed"])
def test_a_resumed_run_continues_its_mlflow_run(stopped: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped at step 3 (its run left RUNNING by a kill, FAILED by an exception), run again for
    one step more: one MLflow run, finished, with the whole curve; the parameter that changed
    keeps its first value. Both attempts use the default store, outputs/mlflow.db in the working
    directory, and as single runs the experiment "runs"."""
    from lightning.pytorch.loggers import MLFlowLogger

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store, run_dir = f"sqlite:///{tmp_path}/outputs/mlflow.db", tmp_path / "outputs" / "runs" / "stopped"
    overrides = (
        *TRACKED_RUN,
        "logger=mlflow",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "+callbacks.fault._target_=probes.Fault",
    )
    # probes.Fault raises at step 3 in the run of seed 0, on rank 0; the checkpoint of step 2 is the last.
    monkeypatch.setenv("FAULT_AT_STEP", "3")
    monkeypatch.setenv("FAULTS", "0:0:raise")
    with monkeypatch.context() as attempt:
        if stopped == "killed":  # a killed process never finalizes its MLflow run
            attempt.setattr(MLFlowLogger, "finalize", lambda self, status="success": None)
        with pytest.raises(RuntimeError, match="fails at step 3"):
            run_training(run_dir, *overrides)
    (first,) = mlflow_runs(store, "runs")
    assert first.info.status == {"killed": "RUNNING", "crashed": "FAILED"}[stopped]

    monkeypatch.setenv("FAULTS", "")  # the same command, and no fault this time
    with captured_log() as log:
        run_training(run_dir, *overrides, f"trainer.max_steps={STEPS + 1}")
    assert any("keeps the parameters it was started with" in message for message in log), log
    metrics = read_json(run_dir / "metrics.json")
    assert (metrics["resumed_from"], metrics["steps"]) == (2, STEPS + 1)
    (run,) = mlflow_runs(store, "runs")
    assert run.info.run_id == first.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["run_dir"] == str(run_dir)
    assert run.data.params["trainer.max_steps"] == str(STEPS)
    assert run.data.metrics["test_err"] == metrics["test_err"]  # logged by the second attempt
    assert 2 in [step for step, _ in metric_history(store, run, "train/loss")]  # by the first, at its step 2


# --- W&B offline: a sweep's two jobs, one after the other in this process as a multirun runs them ---


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    root = tmp_path_factory.mktemp("wandb")
    result = Sweep(root / "sweep", root / "cwd")
    result.cwd.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(result.cwd)
        patch.delenv("WANDB_MODE", raising=False)  # offline by default
        for seed in (0, 1):
            run_training(result.dir / f"seed={seed}", *TRACKED_RUN, "logger=wandb", f"seed={seed}")
    # W&B's service process may still be writing the last run's file after the run finished; it
    # is written in full when W&B shuts down, which the command's process does as it exits.
    import wandb

    wandb.teardown()
    assert len(result.jobs) == 2
    return result


BLOCK, HEADER, FULL, FIRST, MIDDLE, LAST = 32768, 7, 1, 2, 3, 4


def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B run file (run-<id>.wandb): LevelDB's log format, W&B's protobuf records."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        left = BLOCK - offset % BLOCK
        if left < HEADER:  # a block's tail too short for a record header is padding
            offset += left
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        chunk = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            records.append(Record.FromString(pending))
    return records


def wandb_run(job: Path) -> dict[str, Any]:
    """The one W&B run in a job's directory: its run record, config, history rows and exit."""
    (path,) = job.glob("wandb/offline-run-*/run-*.wandb")
    kinds = defaultdict(list)
    for record in wandb_records(path):
        kinds[record.WhichOneof("record_type")].append(record)
    config = {item.key: json.loads(item.value_json) for record in kinds["config"] for item in record.config.update}
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in kinds["history"]
    ]
    return {
        "runs": [record.run for record in kinds["run"]],
        "config": config,
        "history": history,
        "exits": kinds["exit"],
    }


def test_wandb_jobs_are_finished_offline_runs_grouped_by_sweep(wandb_sweep: Sweep) -> None:
    ids = set()
    for job in wandb_sweep.jobs:
        run = wandb_run(job)
        (record,) = run["runs"]
        assert (record.run_group, record.display_name, record.project) == (
            str(wandb_sweep.dir),
            job.name,
            "resnet-cifar",
        )
        assert len(run["exits"]) == 1  # finished with its job
        ids.add(record.run_id)
    assert len(ids) == 2


def test_each_wandb_run_holds_its_own_config_and_history(wandb_sweep: Sweep) -> None:
    for job in wandb_sweep.jobs:
        run = wandb_run(job)
        shown = tensorboard_hparams(job)
        assert same_values({key: str(value) for key, value in run["config"].items()}, shown)
        assert run["config"]["seed"] == int(shown["seed"])
        val_err = [(row["trainer/global_step"], row["val/err"]) for row in run["history"] if "val/err" in row]
        assert same_curve(val_err, tensorboard_curve(job, "val/err"))
        (final,) = [row for row in run["history"] if "test_err" in row]  # this job's results alone
        metrics = read_json(job / "metrics.json")
        assert {key: final[key] for key in RESULTS} == {key: metrics[key] for key in RESULTS}


# --- choosing a tracker that is not installed; naming ---


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_missing_tracker_is_refused_with_its_install_command(
    tracker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before any work, in one line that names the install command (the command prints
    it as its one ``error:`` line, exit status 2)."""
    monkeypatch.setitem(sys.modules, tracker, None)  # `import <tracker>` now fails as where it is not installed
    run_dir = tmp_path / "run"
    with pytest.raises(Exception) as raised:
        run_training(run_dir, *TRACKED_RUN, f"logger={tracker}")
    error = usage_error_in(raised.value)
    assert error is not None, raised.value
    assert f"pip install -e '.[{tracker}]'" in str(error) and "\n" not in str(error)
    assert not (run_dir / ".hydra").exists()


def test_runs_without_mlflow_or_wandb_do_not_import_them(tmp_path: Path) -> None:
    """Importing MLflow takes seconds: the commands and a default run's trainer leave both packages
    alone (in a fresh interpreter, where nothing imported them before)."""
    script = (
        "import sys\n"
        "from resnet_cifar.train import compose_config\n"
        "import resnet_cifar.evaluate, resnet_cifar.train\n"
        "from resnet_cifar.training.build import build_trainer\n"
        f"build_trainer(compose_config(['trainer.accelerator=cpu'], output_dir={str(tmp_path)!r}))\n"
        "print(sorted(name for name in ('mlflow', 'wandb') if name in sys.modules))\n"
    )
    completed = assert_ok(run_command([sys.executable, "-c", script], tmp_path))
    assert completed.stdout.strip().splitlines()[-1] == "[]", describe(completed)


def test_a_runs_group_is_the_folder_that_holds_it() -> None:
    cwd = "/home/me/lab"
    assert run_group("/home/me/lab/outputs/runs/2026-11-30_10-00-00", cwd) == "runs"
    assert run_group("/home/me/lab/outputs/multirun/2026-11-30_10-00-00/seed=0", cwd) == "multirun/2026-11-30_10-00-00"
    assert (
        run_group("/home/me/lab/outputs/study/2026-11-30_10-00-00/model.depth=20,seed=0", cwd)
        == "study/2026-11-30_10-00-00"
    )
    assert run_group("/home/me/lab/sweeps/depth/seed=0", cwd) == "sweeps/depth"
    assert run_group("/scratch/me/depth/seed=0", cwd) == "/scratch/me/depth"
