"""MLflow as the tracker (logger=mlflow), on a real SQLite store read back with MLflow's client and
through `mlflow ui`: one experiment per sweep with one run per job, each with its job's
hyper-parameters, curves and final errors; jobs at once sharing a new store; a DDP job logging
from rank 0 alone; a resumed run continuing its MLflow run. The CSV logger writes beside it in
the same sweep.

The sweep runs as the command (``train -m``, the parallel launcher, one of its 2 jobs a DDP job of
2 processes); the resumed run trains in this process through the Python API (``compose_config``
and ``train``). Runs are tiny (4 steps).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from commands import assert_ok, run_cli
from run_outputs import Sweep, read_json, same_curve, same_values, tensorboard_curve, tensorboard_hparams
from tiny_runs import TRACKED_RESULTS, TRACKED_RUN, TRACKED_STEPS, captured_log, run_training


def sweep(root: Path, *overrides: str) -> Sweep:
    """A tiny sweep into ``root/sweep``, started from the empty folder ``root/cwd``."""
    result = Sweep(root / "sweep", root / "cwd")
    assert_ok(run_cli("train", "-m", *TRACKED_RUN, *overrides, f"hydra.sweep.dir={result.dir}", cwd=result.cwd))
    assert len(result.jobs) == 2
    return result


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
        assert {key: run.data.metrics[key] for key in TRACKED_RESULTS} == {key: metrics[key] for key in TRACKED_RESULTS}
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
        run_training(run_dir, *overrides, f"trainer.max_steps={TRACKED_STEPS + 1}")
    assert any("keeps the parameters it was started with" in message for message in log), log
    metrics = read_json(run_dir / "metrics.json")
    assert (metrics["resumed_from"], metrics["steps"]) == (2, TRACKED_STEPS + 1)
    (run,) = mlflow_runs(store, "runs")
    assert run.info.run_id == first.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["run_dir"] == str(run_dir)
    assert run.data.params["trainer.max_steps"] == str(TRACKED_STEPS)
    assert run.data.metrics["test_err"] == metrics["test_err"]  # logged by the second attempt
    assert 2 in [step for step, _ in metric_history(store, run, "train/loss")]  # by the first, at its step 2
