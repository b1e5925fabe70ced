"""Preemption without SLURM: SIGTERM or the requeue signal saves the checkpoint of the current step
and stops; the rerun resumes from it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from commands import assert_ok, describe, run_cli
from resnet_cifar.launch.preemption import STOP_SIGNALS, SaveAndStopOnSignal, requeue, submitit_requeue_handler
from tiny_runs import TINY_SYNTHETIC_RUN

STEPS = (
    "trainer.max_steps=8",
    "scheduler.milestones=[4,6]",
    "~callbacks.progress_bar",
    "~callbacks.input_preview",
    "callbacks.preemption.check_every_n_steps=1",
)


def test_submitits_requeue_handler_is_recognised() -> None:
    from submitit.core.job_environment import SignalHandler

    handler = SignalHandler.__new__(SignalHandler)
    assert submitit_requeue_handler(handler.checkpoint_and_try_requeue) is not None
    assert submitit_requeue_handler(handler.bypass) is None and submitit_requeue_handler(None) is None


@pytest.mark.slow
def test_sigterm_to_a_ddp_job_saves_its_step_and_resumes(tmp_path: Path, monkeypatch) -> None:
    """SIGTERM to the job's process, which passes it on to its 2 DDP processes: they agree on it at
    the next check (a step here), save, and stop; the rerun resumes from that step (that a resume
    is bit for bit is proven in tests/test_train_determinism_and_resume.py; a single process is tested on SLURM)."""
    # A periodic checkpoint at step 6 falls after the signal: the resumed run must write it to the
    # same last.ckpt that the signal's save wrote (no last-v1.ckpt beside it).
    args = (
        *TINY_SYNTHETIC_RUN,
        *STEPS,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "callbacks.model_checkpoint.every_n_train_steps=6",
    )
    monkeypatch.setenv("SIGNAL_AT_STEP", "3")
    monkeypatch.setenv("SIGNAL_TO", "parent")
    monkeypatch.setenv("SIGNAL_MARKER", str(tmp_path / "signalled"))
    run_dir = tmp_path / "run"
    command = (*args, "+callbacks.signal._target_=probes.SignalOnce", f"hydra.run.dir={run_dir}")
    stopped = run_cli("train", *command, cwd=tmp_path)
    assert stopped.returncode == 128 + 15, describe(stopped)
    saved = re.findall(r"SIGTERM: saved .*last\.ckpt at step (\d+); stopping", stopped.output)
    assert saved and set(saved) == {saved[0]} and int(saved[0]) in (3, 4), describe(stopped)  # every rank, same step
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == int(saved[0])
    resumed = run_cli("train", *command, cwd=tmp_path)
    assert_ok(resumed)
    assert f"(step {saved[0]})" in resumed.output
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["steps"], metrics["resumed_from"]) == (8, int(saved[0]))


def test_the_callback_leaves_signal_handlers_as_it_found_them() -> None:
    import signal

    callback = SaveAndStopOnSignal("unused.ckpt")
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    assert set(before) == {signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}

    class FakeTrainer:
        class fit_loop:
            class epoch_loop:
                pass

    callback.setup(FakeTrainer, None, "fit")
    assert all(signal.getsignal(s) == callback._note for s in STOP_SIGNALS)
    assert FakeTrainer.fit_loop.epoch_loop._broadcast_sigterm_tensor() is None
    callback.teardown(FakeTrainer, None, "fit")
    assert {s: signal.getsignal(s) for s in before} == before


def scontrol_requeue_ending(returncode: int):
    """A stand-in for submitit's requeue handler whose ``scontrol requeue`` ends with ``returncode``."""

    def handler(signum, frame) -> None:
        raise subprocess.CalledProcessError(returncode, ["scontrol", "requeue", "56"])

    return handler


def test_a_requeue_ended_by_its_own_sigterm_counts_as_done() -> None:
    requeue(scontrol_requeue_ending(-signal.SIGTERM))  # SLURM terminated the job, scontrol with it
    with pytest.raises(subprocess.CalledProcessError):
        requeue(scontrol_requeue_ending(1))  # e.g. "Requested operation is presently disabled"
    with pytest.raises(subprocess.CalledProcessError):
        requeue(scontrol_requeue_ending(-signal.SIGKILL))
