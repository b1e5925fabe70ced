"""The commands' side of a refusal (:mod:`resnet_cifar.cli`), run as a user runs them: the
project's own usage errors exit with 2 and print one ``error: <message>`` line without a
traceback, and a refused train command writes nothing but its log; Hydra's errors (an unknown
config key) exit with 1 and print Hydra's message; a full disk is one such line too.

The messages themselves are tested in the test's process (tests/test_cli_*_errors.py,
tests/test_cli_finished_runs_kept.py): the training and evaluation functions raise a
:class:`resnet_cifar.errors.UsageError` whose text is what the command prints after ``error: ``.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from commands import USAGE_ERROR, assert_usage_error, describe, run_cli
from resnet_cifar.cli import exit_on_usage_error
from tiny_runs import TWO_STEPS

HYDRA_ERROR = 1


def test_train_usage_error_is_one_line_exit_2_no_output(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    completed = run_cli("train", *TWO_STEPS, "model.depth=21", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    line = assert_usage_error(completed, "depth=21", "6n+2")
    assert {path.name for path in run_dir.rglob("*")} == {"train.log"}, "only the command's log may be written"
    logged = [entry for entry in (run_dir / "train.log").read_text().splitlines() if "error: " in entry]
    assert len(logged) == 1 and logged[0].endswith(line), "the run's log says why it holds no results"


def test_unknown_config_key_gets_hydras_message(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    completed = run_cli("train", *TWO_STEPS, "model.widht=3", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    assert completed.returncode == HYDRA_ERROR, describe(completed)
    assert "Traceback" not in completed.output, describe(completed)
    assert "Could not override 'model.widht'" in completed.output, describe(completed)
    assert "+model.widht=3" in completed.output  # Hydra's hint, for keys meant to be added


def test_evaluate_usage_error_is_one_line_and_exit_2(tmp_path: Path, finished_run: Path) -> None:
    checkpoint = finished_run / "checkpoints" / "last.ckpt"
    completed = run_cli("evaluate", f"ckpt_path={checkpoint}", "model.depth=14", cwd=tmp_path / "cwd")
    assert_usage_error(completed, str(checkpoint), "depth=8", "depth=14")
    assert not checkpoint.with_suffix(".eval.json").exists()


def test_full_disk_is_reported_as_one_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    @exit_on_usage_error
    def task() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/last.ckpt")

    with pytest.raises(SystemExit) as exit_info:
        task()
    assert exit_info.value.code == USAGE_ERROR
    message = capsys.readouterr().err
    assert message.startswith("error: cannot write /runs/x/checkpoints/last.ckpt: No space left on device")
    assert "hydra.run.dir" in message
