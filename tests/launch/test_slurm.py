"""hydra/launcher=slurm on a real one-node SLURM cluster (scripts/slurm_cluster.sh; marker `slurm`):
CPU sweeps with no launcher overrides but the site's CPUs, refusals and waiting explained, DDP jobs
that fail alone, and preemption / time limits that lose no step."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from commands import REPO, assert_ok, command_environment, describe, processes_of, run_command
from resnet_cifar.launch.study_names import exclude_shared_keys
from tiny_runs import TINY_SYNTHETIC_RUN

pytestmark = pytest.mark.slurm
# The site's own setting: this cluster's node has few CPUs.
SITE = ("hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.poll_s=1")
TINY = (
    *TINY_SYNTHETIC_RUN,
    "trainer.max_steps=4",
    "scheduler.milestones=[2,3]",
    "~callbacks.progress_bar",
    "~callbacks.input_preview",
)


def train_sweep(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    names = exclude_shared_keys([a for a in args if not a.startswith(("seed=", "hydra.sweep.dir="))])
    return run_command([sys.executable, "-m", "resnet_cifar.train", "-m", *args, names], cwd, timeout, **env)


def test_cpu_sweep_asks_for_no_gpus_and_runs(slurm_cluster: None, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    completed = train_sweep(*SITE, *TINY, "seed=0,1", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert_ok(completed)
    for seed in (0, 1):
        assert json.loads((sweep_dir / f"seed={seed}" / "metrics.json").read_text())["steps"] == 4
    assert (sweep_dir / ".submitit").is_dir()


def test_a_refused_submission_is_one_error_line(slurm_cluster: None, tmp_path: Path) -> None:
    # A GPU job asks for a GPU, which this cluster does not have.
    completed = train_sweep(
        *SITE, *TINY, "trainer.accelerator=gpu", "seed=0", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path
    )
    assert completed.returncode == 2, describe(completed)
    assert "Traceback" not in completed.output
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: SLURM refused the jobs: Invalid generic resource (gres) specification"), last
    assert "hydra.launcher.gpus_per_node" in last and "trainer.accelerator=cpu" in last
    assert [line for line in completed.stderr.splitlines() if line.startswith("error:")] == [last]


def test_waiting_jobs_are_reported_with_slurms_reason(slurm_cluster: None, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        "-m",
        *SITE,
        *TINY,
        "hydra.launcher.cpus_per_task=64",
        "hydra.launcher.progress_every_s=1",
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    sweep = subprocess.Popen(
        command, cwd=tmp_path, env=command_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = sweep.stdout.readline()
            seen.append(line)
            if "pending:" in line:
                break
    finally:
        sweep.terminate()
        sweep.wait(timeout=60)
        for job in re.findall(r"Submitted batch job (\d+)|\.submitit/(\d+)", "".join(seen)):
            subprocess.run(["scancel", *filter(None, job)], check=False)
        subprocess.run(["scancel", f"--name={'train'}", "--state=PENDING"], check=False)
    line = seen[-1]
    assert "SLURM jobs of this sweep: 2 pending, 0 running, 0 done of 2" in line, "".join(seen)
    assert "PartitionConfig (64 CPUs per task x 1 tasks per node, but the partition's nodes have" in line
    assert "lower hydra.launcher.cpus_per_task" in line


DDP = (
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.max_steps=6",
    "callbacks.model_checkpoint.every_n_train_steps=2",
)


def test_ddp_jobs_with_a_failing_rank_fail_alone(slurm_cluster: None, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "study"
    study = [a for a in TINY if not a.startswith("model.depth=")]
    completed = run_command(
        [
            "bash",
            REPO / "multirun.sh",
            *SITE,
            *study,
            *DDP,
            "+callbacks.fault._target_=probes.Fault",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        tmp_path / "cwd",
        timeout=600,
        PYTHON=sys.executable,
        DEPTHS="8",
        SEEDS="0 1 2",
        FAULTS="0:1:sigkill,1:0:raise",
    )
    assert completed.returncode != 0, describe(completed)
    assert not processes_of(sweep_dir), processes_of(sweep_dir)
    jobs = {seed: sweep_dir / f"model.depth=8,model=resnet,seed={seed}" for seed in (0, 1, 2)}
    assert json.loads((jobs[2] / "metrics.json").read_text())["steps"] == 6
    assert not (jobs[0] / "metrics.json").exists() and not (jobs[1] / "metrics.json").exists()
    # The failure of the first job names the task srun saw killed.
    assert re.search(r"SLURM job \d+_0 failed: .*srun: error: \S+: task 1: Killed", completed.output), describe(
        completed
    )
    report = (sweep_dir / "report.md").read_text()
    assert "3 runs: 1 finished, 2 failed or unfinished" in report, report


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_preemption_and_time_limits_requeue_losing_nothing(release_requeued_jobs: None, tmp_path: Path) -> None:
    """A single-process and a 2-process DDP job, each interrupted three times (USR2, SIGTERM, its
    time limit): both end with the steps and the weights of the same runs never interrupted."""
    steps = ("trainer.max_steps=8", "scheduler.milestones=[4,6]", "callbacks.preemption.check_every_n_steps=1")
    variants = {"cpu": ("trainer=cpu",), "ddp": ("trainer=ddp", "trainer.accelerator=cpu")}
    # The uninterrupted runs, on this machine without SLURM (started first, they run while the sweep waits).
    references = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "resnet_cifar.train",
                *TINY,
                *steps,
                *overrides,
                f"hydra.run.dir={tmp_path / 'reference' / name}",
            ],
            cwd=tmp_path,
            env=command_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, overrides in variants.items()
    }
    sweep_dir = tmp_path / "sweep"
    completed = train_sweep(
        *SITE,
        *TINY,
        *steps,
        "trainer=cpu,ddp",
        "trainer.accelerator=cpu",
        "+callbacks.interrupt._target_=probes.InterruptOnSlurm",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=30",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        timeout=900,
    )
    assert_ok(completed)
    for name, reference in references.items():
        assert reference.wait(timeout=300) == 0
        job = sweep_dir / f"trainer={name}"
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["steps"] == 8 and metrics["resumed_from"] is not None
        log = (job / "train.log").read_text()
        saved = re.findall(r"(SIGUSR2|SIGTERM): saved .*last\.ckpt at step (\d+); stopping", log)
        resumed = re.findall(r"resuming from .*last\.ckpt \(step (\d+)\)", log)
        assert {signal for signal, _ in saved} == {"SIGUSR2", "SIGTERM"} and len(saved) >= 3, log
        assert sorted({step for _, step in saved}) == sorted(set(resumed)), log  # each resumed where it saved
        expected = final_weights(tmp_path / "reference" / name)
        for key, value in final_weights(job).items():
            assert torch.equal(value, expected[key]), f"{name}: {key} differs from the uninterrupted run"


def test_a_cancelled_job_saves_its_step_and_stays_cancelled(slurm_cluster: None, tmp_path: Path) -> None:
    """A plain scancel sends SIGTERM to a job that is ending: it saves last.ckpt at its step and is
    not requeued (SIGTERM alone would make submitit's handler bring it back); the sweep reports it.
    (1000 steps: the cancel comes at the first, and the job must not end before the signal.)"""
    sweep_dir = tmp_path / "sweep"
    completed = train_sweep(
        *SITE,
        *TINY,
        "trainer.max_steps=1000",
        "callbacks.preemption.check_every_n_steps=1",
        "+callbacks.interrupt._target_=probes.InterruptOnSlurm",
        "+callbacks.interrupt.plan=cancel",
        "seed=0",
        "hydra.launcher.end_grace_s=10",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert completed.returncode != 0, describe(completed)
    (job,) = [path for path in sweep_dir.iterdir() if path.is_dir() and (path / "train.log").exists()]
    log = (job / "train.log").read_text()
    saved = re.findall(r"SIGTERM: saved .*last\.ckpt at step (\d+); stopping", log)
    assert len(saved) == 1, log
    assert re.search(r"SLURM job \d+ is not requeued: it is ending \(JobState=(CANCELLED|COMPLETING)", log), log
    assert "resuming from" not in log and not (job / "metrics.json").exists()
    assert torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == int(saved[0])
