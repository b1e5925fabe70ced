"""The train command as a user runs it (a fresh ``python -m resnet_cifar.train`` process): a run
writes its folder and nothing in the working directory, the evaluate command tests its last
checkpoint as the run did, and a multirun over depths gives each job a flat folder of its own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from commands import assert_ok, describe, run_command
from run_outputs import read_json
from tiny_runs import TINY_SYNTHETIC_RUN


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
