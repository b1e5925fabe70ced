"""Faults a long sweep meets: reruns, kills, divergence, foreign files, full disks, DDP."""

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_SYNTHETIC_RUN, describe, run_command
from resnet_cifar.cli import exit_on_usage_error

# 450 training images (500 before the 50-image val split), batch 32: 15 steps per epoch.
RUN = (*TINY_SYNTHETIC_RUN, "data.synthetic_sizes=[500,100]", "callbacks.model_checkpoint.every_n_train_steps=5")


def train_command(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "resnet_cifar.train", *RUN, *overrides, f"hydra.run.dir={run_dir}"]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_command(command, cwd, timeout=600)


def test_full_disk_is_reported_as_one_clear_message(capsys):
    @exit_on_usage_error
    def task():
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/last.ckpt")

    with pytest.raises(SystemExit) as exit_info:
        task()
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("error: cannot write /runs/x/checkpoints/last.ckpt: No space left on device")
    assert "hydra.run.dir" in message


def test_unwritable_output_directory_fails_clearly_and_writes_no_results(tmp_path):
    run_dir = tmp_path / "run"
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    command = train_command(
        run_dir, "trainer.max_steps=10", f"callbacks.model_checkpoint.dirpath={blocker}/checkpoints"
    )
    completed = run(command, cwd=tmp_path)
    assert completed.returncode == 2, describe(completed)
    assert "Traceback" not in completed.output
    assert f"error: cannot write {blocker}" in completed.output, describe(completed)
    assert not (run_dir / "metrics.json").exists()
