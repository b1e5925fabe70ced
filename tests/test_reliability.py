"""Faults a long sweep meets: reruns, kills, divergence, foreign files, full disks, DDP."""

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_SYNTHETIC_RUN, assert_ok, command_environment, describe, read_json, run_command
from resnet_cifar.cli import exit_on_usage_error
from resnet_cifar.files import write_json_atomically
from resnet_cifar.training.checkpoints import AtomicCheckpointIO

# 450 training images (500 before the 50-image val split), batch 32: 15 steps per epoch.
RUN = (*TINY_SYNTHETIC_RUN, "data.synthetic_sizes=[500,100]", "callbacks.model_checkpoint.every_n_train_steps=5")


def train_command(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "resnet_cifar.train", *RUN, *overrides, f"hydra.run.dir={run_dir}"]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_command(command, cwd, timeout=600)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """Seed 0 for 40 steps (2 2/3 epochs) without interruption: the reference run."""
    run_dir = tmp_path_factory.mktemp("reliability") / "uninterrupted"
    assert_ok(run(train_command(run_dir, "trainer.max_steps=40", "seed=0"), cwd=run_dir.parent))
    return run_dir


def test_sigkill_then_rerun_resumes_to_bit_identical_weights(uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    command = train_command(run_dir, "trainer.max_steps=40", "seed=0")
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

    resumed = run(command, cwd=tmp_path)
    assert_ok(resumed)
    assert f"resuming from {last}" in resumed.output
    metrics = read_json(run_dir / "metrics.json")
    assert (metrics["steps"], metrics["resumed_from"]) == (40, killed_at)
    assert_bit_identical(weights(uninterrupted), weights(run_dir))


def test_diverging_run_stops_at_once_and_keeps_its_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "diverged"
    # A checkpoint every step, so that one exists before the loss explodes a few steps in.
    overrides = ("trainer.max_steps=40", "optimizer.lr=1e8", "callbacks.model_checkpoint.every_n_train_steps=1")
    completed = run(train_command(run_dir, *overrides), cwd=tmp_path)
    assert completed.returncode == 2, describe(completed)
    assert "Traceback" not in completed.output
    message = [line for line in completed.output.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and "training diverged: the" in message[0], describe(completed)
    assert "became NaN or infinite" in message[0] and "last good checkpoint is kept" in message[0]
    bad_step = int(message[0].split(" step ")[1].split(";")[0])
    assert not (run_dir / "metrics.json").exists()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] <= bad_step
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())


def test_ddp_keeps_the_global_batch_passes_every_hook_and_writes_one_run_directory(tmp_path):
    """Two CPU processes: the same steps as one process, half of each global batch each, every
    image once an epoch; a user's callback gets every per-batch hook of every step on each rank,
    with the gradients all-reduced by on_before_optimizer_step; one run directory for both."""
    runs, cwd, probes = tmp_path / "runs", tmp_path / "cwd", tmp_path / "probes"
    cwd.mkdir(), probes.mkdir()
    run_dir = runs / "ddp"
    probe = (
        "+callbacks.images._target_=probes.RecordTrainingImages",
        f"+callbacks.images.output_dir={probes}",
        "+callbacks.hooks._target_=probes.RecordBatchHooks",
        f"+callbacks.hooks.output_dir={probes}",
    )
    command = train_command(
        run_dir, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_steps=30", *probe
    )
    assert_ok(run(command, cwd=cwd))
    records = [json.loads((probes / f"probe_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2] and [r["steps"] for r in records] == [30, 30]
    assert read_json(run_dir / "metrics.json")["steps"] == 30
    for epoch in ("0", "1"):
        per_rank = [r["batches"][epoch] for r in records]
        assert [len(batches) for batches in per_rank] == [15, 15]
        # 450 images: 14 global batches of 32 and one of 2, each split in two halves.
        for step, (rank0, rank1) in enumerate(zip(*per_rank)):
            assert len(rank0) == len(rank1) == (16 if step < 14 else 1)
            assert not set(rank0) & set(rank1)
        seen = [index for batches in per_rank for batch in batches for index in batch]
        assert sorted(seen) == list(range(450)), f"epoch {epoch}: every training image exactly once"

    hooks = [read_json(probes / f"hooks_rank{rank}.json") for rank in (0, 1)]
    step = [
        "on_train_batch_start",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "on_train_batch_end",
    ]
    for rank_hooks in hooks:
        assert rank_hooks["calls"] == step * 30
        assert len(rank_hooks["gradient_norms"]) == 30 and all(norm > 0 for norm in rank_hooks["gradient_norms"])
    assert hooks[0]["gradient_norms"] == pytest.approx(hooks[1]["gradient_norms"], rel=1e-6)

    assert list(runs.iterdir()) == [run_dir]
    assert (run_dir / "train_rank1.log").is_file(), sorted(p.name for p in run_dir.iterdir())
    assert list(cwd.iterdir()) == []


def test_checkpoint_write_that_fails_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)

    def disk_full(obj, file):
        Path(file).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_results_file_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json_atomically(path, {"test_err": 8.75})

    def fails(self, text):
        Path.write_bytes(self, text[:5].encode())
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", fails)
    with pytest.raises(OSError):
        write_json_atomically(path, {"test_err": 99.0})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"test_err": 8.75}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


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
