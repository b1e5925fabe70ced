"""Weights & Biases as the tracker (logger=wandb), offline: a sweep's two jobs, trained one after
the other in this process as a multirun runs them (the Python API, ``compose_config`` and
``train``), are finished offline runs grouped by the sweep, each holding its own job's
hyper-parameters, curves and final errors, read back from W&B's run files. Runs are tiny (4 steps).
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from run_outputs import Sweep, read_json, same_curve, same_values, tensorboard_curve, tensorboard_hparams
from tiny_runs import TRACKED_RESULTS, TRACKED_RUN, run_training


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
        assert {key: final[key] for key in TRACKED_RESULTS} == {key: metrics[key] for key in TRACKED_RESULTS}
