"""An sbatch script of one's own (scripts/slurm/train.sbatch) and srun in an salloc allocation, on
the local SLURM cluster (scripts/slurm_cluster.sh; marker `slurm`): one DDP job of two tasks into
one run directory; a signalled job saves at a step all its tasks agree on, requeues itself once
and resumes, and a cancelled one stays ended."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from commands import REPO, describe
from launch.test_external import (
    FALSE_ADVICE,
    PROBE,
    TINY_DDP,
    assert_one_ddp_run_of_two,
    outside_any_job,
    run,
    the_one_run_dir,
)
from tiny_runs import TINY_SYNTHETIC_RUN

pytestmark = pytest.mark.slurm
SBATCH_SCRIPT = REPO / "scripts" / "slurm" / "train.sbatch"


def test_srun_in_salloc_runs_one_ddp_job_of_two_tasks(slurm_cluster: None, tmp_path: Path) -> None:
    """salloc names its job "interactive", in which Lightning does not see SLURM: each task would
    start two processes of its own, two jobs of two writing into two directories."""
    command = [
        "salloc",
        "-n",
        "2",
        "--cpus-per-task=1",
        "srun",
        "-n",
        "2",
        sys.executable,
        "-m",
        "resnet_cifar.train",
        *TINY_DDP,
        "trainer.devices=2",
        *PROBE,
    ]
    completed = run(command, tmp_path)
    assert completed.returncode == 0, describe(completed)
    run_dir = the_one_run_dir(tmp_path)
    assert re.fullmatch(r"slurm-\d+\.0", run_dir.name), run_dir
    assert_one_ddp_run_of_two(run_dir, completed.output)


def sbatch(*options: str, cwd: Path, plan: str, steps: int) -> subprocess.Popen:
    """scripts/slurm/train.sbatch submitted with ``options`` (the site's: this cluster's CPUs, no
    GPUs), interrupted as ``plan`` says; waits until the job, requeued or not, has ended."""
    cwd.mkdir(parents=True)
    command = [
        "sbatch",
        "--wait",
        "--parsable",
        "--gres=none",
        "--cpus-per-task=1",
        "--time=10",
        *options,
        str(SBATCH_SCRIPT),
        *TINY_SYNTHETIC_RUN,
        "trainer.accelerator=cpu",
        f"trainer.max_steps={steps}",
        "~callbacks.progress_bar",
        "~callbacks.input_preview",
        "callbacks.preemption.check_every_n_steps=2",
        "+callbacks.interrupt._target_=probes.InterruptOnSlurm",
        f"+callbacks.interrupt.plan='{plan}'",
    ]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=outside_any_job(PYTHON=sys.executable),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def job_fields(job_id: str) -> dict[str, str]:
    shown = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"\b(JobState|Restarts)=(\S+)", shown))


def test_own_sbatch_script_requeues_on_usr1_and_term_only(release_requeued_jobs: None, tmp_path: Path) -> None:
    """A 2-task DDP job signalled twice (``scancel --signal=USR1``, then ``--signal=TERM`` in its
    second attempt) ends in its third attempt with every step; a job ended with ``scancel`` saves
    its step and stays ended."""
    preempted = sbatch("--ntasks-per-node=2", cwd=tmp_path / "preempted", plan="USR1,TERM", steps=12)
    cancelled = sbatch("--ntasks-per-node=1", cwd=tmp_path / "cancelled", plan="cancel", steps=12)
    outputs = {
        name: job.communicate(timeout=600)[0] for name, job in (("preempted", preempted), ("cancelled", cancelled))
    }
    job_ids = {name: output.split()[0].split(";")[0] for name, output in outputs.items()}  # --parsable: id[;cluster]

    log = (tmp_path / "preempted" / f"slurm-{job_ids['preempted']}.out").read_text()
    assert preempted.returncode == 0, log[-6000:]
    run_dir = tmp_path / "preempted" / "outputs" / "runs" / f"slurm-{job_ids['preempted']}.0"
    assert the_one_run_dir(tmp_path / "preempted") == run_dir
    saved = re.findall(r"(SIGUSR1|SIGTERM): saved .*last\.ckpt at step (\d+); stopping", log)
    # Each signal: both tasks saved at the same step, which the next attempt resumed from.
    by_signal = {name: {step for signal_name, step in saved if signal_name == name} for name in ("SIGUSR1", "SIGTERM")}
    assert len(saved) == 4 and all(len(steps) == 1 for steps in by_signal.values()), log[-6000:]
    resumed = re.findall(r"resuming from .*last\.ckpt \(step (\d+)\)", log)
    assert sorted(set(resumed)) == sorted(by_signal["SIGUSR1"] | by_signal["SIGTERM"]), log[-6000:]
    assert len(re.findall(r"requeueing SLURM job \d+ \(scontrol requeue\)", log)) == 2  # once per signal
    assert job_fields(job_ids["preempted"]) == {"JobState": "COMPLETED", "Restarts": "2"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 12 and metrics["resumed_from"] == int(by_signal["SIGTERM"].pop()) > 0
    for advice in FALSE_ADVICE:
        assert advice not in log

    log = (tmp_path / "cancelled" / f"slurm-{job_ids['cancelled']}.out").read_text()
    assert cancelled.returncode != 0, log[-6000:]
    assert "auto-requeueing enabled" not in log  # Lightning's, which sees SLURM in this 1-task job: it is off
    (step,) = re.findall(r"SIGTERM: saved .*last\.ckpt at step (\d+); stopping", log)
    assert re.search(
        rf"SLURM job {job_ids['cancelled']} is not requeued: it is ending "
        rf".* hydra\.run\.dir=\S+slurm-{job_ids['cancelled']}\.0",
        log,
    )
    assert job_fields(job_ids["cancelled"]) == {"JobState": "CANCELLED", "Restarts": "0"}
    last = tmp_path / "cancelled" / "outputs" / "runs" / f"slurm-{job_ids['cancelled']}.0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == int(step)
