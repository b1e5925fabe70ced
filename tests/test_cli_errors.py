"""Every bad input gets one clear message (the problem and the fix), a non-zero exit status and no
traceback, from the command a user types; and no bad input costs the work of a finished run.

The project's own usage errors exit with 2 and print ``error: <message>``; Hydra's errors (an
unknown config key) exit with 1 and print Hydra's message.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_IMAGE_FOLDER_RUN, TINY_SYNTHETIC_RUN, RunCli, assert_ok, describe
from fake_cifar import write_image_folder

USAGE_ERROR = 2
HYDRA_ERROR = 1


def assert_usage_error(completed: subprocess.CompletedProcess, *phrases: str) -> str:
    """Exit status 2, exactly one ``error:`` line holding every phrase, and no traceback."""
    assert completed.returncode == USAGE_ERROR, describe(completed)
    assert "Traceback" not in completed.output, describe(completed)
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, describe(completed)
    for phrase in phrases:
        assert phrase in errors[0], f"{phrase!r} not in {errors[0]!r}"
    return errors[0]


def train_fails(
    run_cli: RunCli, tmp_path: Path, *overrides: str, run_dir: Path | None = None
) -> subprocess.CompletedProcess:
    """``train`` on tiny synthetic data with ``overrides``, in ``run_dir`` (default tmp_path/run)."""
    run_dir = run_dir or tmp_path / "run"
    overrides = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=2", *overrides, f"hydra.run.dir={run_dir}")
    return run_cli("train", *overrides, cwd=tmp_path / "cwd")


def evaluate_fails(run_cli: RunCli, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_cli("evaluate", *overrides, cwd=tmp_path / "cwd")


def files_of(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder``."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class CodeOnLoad:
    """Unpickling this runs code: it creates ``marker`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def write_pickle_payload(path: Path, marker: Path) -> Path:
    """A checkpoint-like file whose unpickling would create ``marker``; checked to really do so."""
    torch.save({"state_dict": {}, "hyper_parameters": {"payload": CodeOnLoad(marker)}}, path)
    torch.load(path, weights_only=False)  # the unsafe load the project must never do
    assert marker.exists(), "the payload must work, or the test proves nothing"
    marker.unlink()
    return path


@pytest.fixture(scope="module")
def finished_run(run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step run of depth 8 (its directory)."""
    root = tmp_path_factory.mktemp("finished")
    run_dir = root / "run"
    overrides = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=2", f"hydra.run.dir={run_dir}")
    assert_ok(run_cli("train", *overrides, cwd=root / "cwd"))
    assert (run_dir / "metrics.json").is_file()
    return run_dir


# --- configuration ---


def test_depth_not_of_the_form_6n_plus_2(run_cli: RunCli, tmp_path: Path) -> None:
    assert_usage_error(train_fails(run_cli, tmp_path, "model.depth=21"), "depth=21", "6n+2", "20, 32, 44, 56, 110")


def test_unknown_shortcut(run_cli: RunCli, tmp_path: Path) -> None:
    assert_usage_error(train_fails(run_cli, tmp_path, "model.shortcut=C"), "'C'", "A, B")


def test_unknown_config_key_gets_hydras_message(run_cli: RunCli, tmp_path: Path) -> None:
    completed = train_fails(run_cli, tmp_path, "model.widht=3")
    assert completed.returncode == HYDRA_ERROR, describe(completed)
    assert "Traceback" not in completed.output, describe(completed)
    assert "Could not override 'model.widht'" in completed.output, describe(completed)
    assert "+model.widht=3" in completed.output  # Hydra's hint, for keys meant to be added


def test_global_batch_not_divisible_by_the_ddp_world_size_fails_before_training(
    run_cli: RunCli, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    completed = train_fails(
        run_cli, tmp_path, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "data.batch_size=127"
    )
    assert_usage_error(completed, "data.batch_size=127", "2 processes", "multiple of 2")
    assert not list(run_dir.rglob("*.ckpt")) and not (run_dir / "metrics.json").exists()
    assert not (run_dir / "train_rank1.log").exists(), "no DDP process may have started"


@pytest.mark.parametrize(
    "overrides,phrases",
    [
        (
            ("module=whole_step", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"),
            ("module=whole_step", "DDP (2 processes", "use module=classifier"),
        ),
        (
            ("module=whole_step", "optimizer._target_=torch.optim.Adam", "~optimizer.momentum"),
            ("the optimizer is Adam", "optimizer=sgd", "module=classifier"),
        ),
        (("module=whole_step", "trainer.gradient_clip_val=1.0"), ("gradient clipping", "use module=classifier")),
        (
            ("module=whole_step", "scheduler=plateau"),
            ("module.lr_scheduler.interval=step", "use module=classifier"),
        ),
        (("trainer.gradient_clip_algorithm=sideways",), ("gradient_clip_algorithm", "sideways")),
        (("~callbacks.training_clock",), ("callbacks.training_clock is required", "metrics.json")),
    ],
    ids=["ddp", "not-sgd", "clipping", "epoch-scheduler", "unknown-clip-algorithm", "required-callback"],
)
def test_what_a_run_cannot_do_is_refused_before_training(
    run_cli: RunCli, tmp_path: Path, overrides: tuple[str, ...], phrases: tuple[str, ...]
) -> None:
    run_dir = tmp_path / "run"
    assert_usage_error(train_fails(run_cli, tmp_path, *overrides), *phrases)
    assert not list(run_dir.rglob("*.ckpt")) and not (run_dir / "metrics.json").exists()
    assert not (run_dir / "train_rank1.log").exists(), "no DDP process may have started"


# --- data ---


def test_missing_data_root_without_download(run_cli: RunCli, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    completed = run_cli(
        "train",
        *TINY_IMAGE_FOLDER_RUN,
        f"data.root={missing}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path / "cwd",
    )
    assert_usage_error(completed, str(missing), "data.root", "data.download=true")
    assert not missing.exists(), "nothing may be created in place of the missing data"


def test_corrupt_cache_file(run_cli: RunCli, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    cache = root / "cifar10-uint8.pt"
    cache.write_bytes(np.random.default_rng(0).bytes(4096))
    completed = run_cli(
        "train", *TINY_IMAGE_FOLDER_RUN, f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path / "cwd"
    )
    message = assert_usage_error(completed, str(cache), "corrupt", "delete it")
    assert "weights_only" not in message, "no advice from torch to load files unsafely"


def test_corrupt_image_in_an_image_folder(run_cli: RunCli, tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", 3, 1)
    broken = root / "train" / "cat" / "0001.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    completed = run_cli(
        "train",
        *TINY_IMAGE_FOLDER_RUN,
        f"data.root={root}",
        "data.val_size=5",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path / "cwd",
    )
    assert_usage_error(completed, str(broken), "replace or remove it")
    assert not (root / "cifar10-uint8.pt").exists(), "no cache may be written from broken files"


# --- checkpoints ---


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_checkpoint(run_cli: RunCli, tmp_path: Path, command: str) -> None:
    if command == "train":
        completed = train_fails(run_cli, tmp_path, "ckpt_path=/nope.ckpt")
    else:
        completed = evaluate_fails(run_cli, tmp_path, "ckpt_path=/nope.ckpt")
    assert_usage_error(completed, "/nope.ckpt", "does not exist", "last.ckpt")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_unreadable_checkpoint(run_cli: RunCli, tmp_path: Path, command: str) -> None:
    checkpoint = tmp_path / "random.ckpt"
    checkpoint.write_bytes(np.random.default_rng(1).bytes(4096))
    if command == "train":
        completed = train_fails(run_cli, tmp_path, f"ckpt_path={checkpoint}")
    else:
        completed = evaluate_fails(run_cli, tmp_path, f"ckpt_path={checkpoint}")
    message = assert_usage_error(completed, str(checkpoint), "cannot be read", "another checkpoint")
    assert "refused" not in message, "a damaged file is not a refused payload"
    assert "weights_only" not in message, "no advice from torch to load files unsafely"


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_checkpoint_with_a_pickle_payload_is_refused_without_running_it(
    run_cli: RunCli, tmp_path: Path, finished_run: Path, command: str
) -> None:
    marker = tmp_path / "payload_ran"
    checkpoint = write_pickle_payload(tmp_path / "payload.ckpt", marker)
    before = files_of(finished_run)
    if command == "train":  # resuming into a finished run's directory must not harm it either
        completed = train_fails(run_cli, tmp_path, f"ckpt_path={checkpoint}", run_dir=finished_run)
    else:
        completed = evaluate_fails(run_cli, tmp_path, f"ckpt_path={checkpoint}")
    message = assert_usage_error(completed, str(checkpoint), "refused", "source you trust")
    assert "weights_only" not in message, "no advice from torch to load files unsafely"
    assert not marker.exists(), "the checkpoint's code ran"
    after = files_of(finished_run)
    assert {k: v for k, v in after.items() if not k.startswith(".hydra") and k != "train.log"} == {
        k: v for k, v in before.items() if not k.startswith(".hydra") and k != "train.log"
    }


def test_train_resuming_a_checkpoint_of_another_depth(run_cli: RunCli, tmp_path: Path, finished_run: Path) -> None:
    checkpoint = finished_run / "checkpoints" / "last.ckpt"
    completed = train_fails(run_cli, tmp_path, "model.depth=14", f"ckpt_path={checkpoint}")
    assert_usage_error(completed, str(checkpoint), "depth=8", "depth=14")
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_evaluate_a_checkpoint_of_another_depth(run_cli: RunCli, tmp_path: Path, finished_run: Path) -> None:
    checkpoint = finished_run / "checkpoints" / "last.ckpt"
    completed = evaluate_fails(run_cli, tmp_path, f"ckpt_path={checkpoint}", "model.depth=14")
    assert_usage_error(completed, str(checkpoint), "depth=8", "depth=14")
    assert not checkpoint.with_suffix(".eval.json").exists()


# --- no bad input loses finished work ---


@pytest.fixture(scope="module")
def failed_resume(
    run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory, finished_run: Path
) -> tuple[subprocess.CompletedProcess, dict[str, str], dict[str, str], Path]:
    """A finished run's command rerun in (a copy of) its directory with another depth.

    It finds the run's last.ckpt, resumes it and must stop. Returns the process, the files
    before and after (relative path -> hash) and the directory.
    """
    tmp_path = tmp_path_factory.mktemp("failed_resume")
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    before = files_of(run_dir)
    completed = train_fails(run_cli, tmp_path, "model.depth=14", run_dir=run_dir)
    return completed, before, files_of(run_dir), run_dir


def test_failed_resume_in_a_finished_runs_directory_keeps_its_results(failed_resume) -> None:
    completed, before, after, _ = failed_resume
    assert_usage_error(completed, "checkpoints/last.ckpt", "depth=8", "depth=14")
    for name in ("metrics.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert after[name] == before[name], f"{name} changed"
    event_files = lambda files: {name for name in files if name.startswith("events.")}  # noqa: E731
    assert event_files(after) == event_files(before)


def test_failed_resume_in_a_finished_runs_directory_keeps_its_config(failed_resume) -> None:
    _, before, after, _ = failed_resume
    assert after[".hydra/config.yaml"] == before[".hydra/config.yaml"]
