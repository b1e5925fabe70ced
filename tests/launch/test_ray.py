"""hydra/launcher=ray_cluster on a real two-node Ray cluster (scripts/ray_cluster.sh; marker `ray`): the
study with its report and a preempted job that resumes, failing jobs that fail alone (a task
process killed, an exception, a NaN, DDP ranks dying), 2-process DDP jobs one of which loses its
node and resumes on the other, and requests no node can meet.

The tests of this file share the cluster one after another (pytest-xdist keeps a file's tests in
one worker): the node-loss test stops the worker node and starts it again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from commands import REPO, TESTS, assert_ok, command_environment, describe, processes_of, run_command
from launch.test_slurm import train_sweep
from resnet_cifar.launch.study_names import exclude_shared_keys
from tiny_runs import TINY_SYNTHETIC_RUN

pytestmark = pytest.mark.ray
TINY = (
    *TINY_SYNTHETIC_RUN,
    "trainer.max_steps=4",
    "scheduler.milestones=[2,3]",
    "~callbacks.progress_bar",
    "~callbacks.input_preview",
)
STUDY = tuple(arg for arg in TINY if not arg.startswith("model.depth="))
DDP = ("trainer=ddp", "trainer.accelerator=cpu")
PROGRESS = re.compile(r"Ray jobs of this sweep: (\d+) pending, (\d+) running, (\d+) done of (\d+)")


def ray_site(address: str, cpus: int = 1, **env: str) -> tuple[str, ...]:
    """The launcher's settings for the test cluster: its address, ``cpus`` CPUs a job (its nodes
    have 2), and the jobs' environment: ``env`` and the test probes on PYTHONPATH (Ray's workers
    get the environment of the cluster, not of the sweep's command)."""
    env_vars = {"PYTHONPATH": str(TESTS), **env}
    return (
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={address}",
        f"hydra.launcher.ray.remote.num_cpus={cpus}",
        "hydra.launcher.poll_s=0.5",
        *(f"+hydra.launcher.ray.init.runtime_env.env_vars.{key}='{value}'" for key, value in env_vars.items()),
    )


def study(sweep_dir: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """./multirun.sh with ``args``, its sweep in ``sweep_dir``."""
    return run_command(
        ["bash", REPO / "multirun.sh", *args, f"hydra.sweep.dir={sweep_dir}"],
        sweep_dir.parent / "cwd",
        timeout=timeout,
        PYTHON=sys.executable,
        **env,
    )


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def test_study_reports_and_a_sigtermed_job_resumes(ray_cluster: str, tmp_path: Path) -> None:
    """ResNet-8/14 x 2 seeds, 2 CPUs a job: two jobs at a time on the two nodes, the others wait
    (and the progress lines say so). The first job to reach step 2 gets SIGTERM: it saves at the
    step it notices it, Ray runs it again, and it resumes from that step."""
    sweep_dir = tmp_path / "study"
    marker = tmp_path / "signalled"
    completed = study(
        sweep_dir,
        *ray_site(ray_cluster, cpus=2, SIGNAL_MARKER=str(marker), SIGNAL_AT_STEP="2"),
        *STUDY,
        "hydra.launcher.progress_every_s=1",
        "+callbacks.signal._target_=probes.SignalOnce",
        DEPTHS="8 14",
        SEEDS="0 1",
    )
    assert_ok(completed)
    jobs = {
        (depth, seed): sweep_dir / f"model.depth={depth},model=resnet,seed={seed}"
        for depth in (8, 14)
        for seed in (0, 1)
    }
    resumed = []
    for job in jobs.values():
        result = metrics(job)
        assert result["steps"] == 4, job
        log = (job / "train.log").read_text()
        if result["resumed_from"] is not None:
            resumed.append(job)
            # Saved at the step it noticed the signal (2, or 3 where the preemption callback had
            # already looked at step 2), and resumed at that step.
            saved = re.findall(r"SIGTERM: saved .*last\.ckpt at step (\d+); stopping", log)
            assert saved and int(saved[0]) in (2, 3) and result["resumed_from"] == int(saved[0]), (result, log)
            assert re.search(rf"resuming from .*last\.ckpt \(step {saved[0]}\)", log), log
    assert resumed, "no job was stopped by SIGTERM and resumed"
    report = (sweep_dir / "report.md").read_text()
    assert "4 runs: 4 finished" in report, report
    lines = [tuple(map(int, match)) for match in PROGRESS.findall(completed.output)]
    assert lines and all(pending + running + done == total == 4 for pending, running, done, total in lines), lines
    assert any(pending > 0 for pending, *_ in lines), lines  # 4 jobs of 2 CPUs on 2 nodes of 2 CPUs
    assert "pending jobs wait for a node with 2 CPUs free" in completed.output


def test_failing_jobs_fail_alone_and_the_report_lists_them(ray_cluster: str, tmp_path: Path) -> None:
    """Single-process and 2-process DDP jobs: a task process SIGKILLed on each of its attempts, an
    exception, a NaN, a DDP rank killed; the others finish, nothing is left running."""
    sweep_dir = tmp_path / "study"
    faults = "0:0:sigkill,1:0:raise,2:1:nan"  # seed:rank:how
    completed = study(
        sweep_dir,
        *ray_site(ray_cluster, FAULTS=faults),
        *STUDY,
        "trainer=cpu,ddp",
        "trainer.accelerator=cpu",
        "hydra.launcher.ray.remote.max_retries=1",
        "+callbacks.fault._target_=probes.Fault",
        DEPTHS="8",
        SEEDS="0 1 2",
    )
    assert completed.returncode != 0, describe(completed)
    assert not processes_of(sweep_dir), processes_of(sweep_dir)
    job = {
        (trainer, seed): sweep_dir / f"model.depth=8,model=resnet,seed={seed},trainer={trainer}"
        for trainer in ("cpu", "ddp")
        for seed in (0, 1, 2)
    }
    assert metrics(job["cpu", 2])["steps"] == 4  # no rank 1 to fault
    for failed in ("cpu", 0), ("cpu", 1), ("ddp", 0), ("ddp", 1), ("ddp", 2):
        assert not (job[failed] / "metrics.json").exists(), failed
    output = completed.output
    failures = {  # job -> what its failure says
        # The task process itself killed, on its first attempt and on its retry.
        "seed=0 trainer=cpu": r"its process or node was lost on each of its 2 attempts",
        "seed=1 trainer=cpu": r"RuntimeError: probe: rank 0 fails at step 2",
        "seed=0 trainer=ddp": r"DDP process local rank 0 \(pid \d+\) was killed by SIGKILL",
        "seed=1 trainer=ddp": r"DDP process local rank \d \(pid \d+\) exited with status 1",  # rank 0 raised
        "seed=2 trainer=ddp": r"DDP process local rank \d \(pid \d+\) exited with status 2",  # diverged: a usage error
    }
    for job_name, says in failures.items():
        assert re.search(rf"Ray job #\d+ \([^)]*{job_name}\) failed: .*{says}", output), (
            f"{job_name}: {describe(completed)}"
        )
    assert "probe: rank 0 fails at step 2" in output and "training diverged" in output
    report = (sweep_dir / "report.md").read_text()
    assert "6 runs: 1 finished, 5 failed or unfinished" in report, report


def ray_cluster_script(command: str) -> str:
    return subprocess.run(
        [REPO / "scripts" / "ray_cluster.sh", command], capture_output=True, text=True, check=True, timeout=300
    ).stdout


def test_ddp_jobs_on_a_lost_node_resume_on_the_other_node(ray_cluster: str, tmp_path: Path) -> None:
    """Two 2-process DDP jobs of 2 CPUs, one on each node, held at step 5 (checkpoints every 2
    steps). The worker node's processes are all killed, as when a spot instance is reclaimed: its
    job is run again on the head node, resumes at step 4, and both finish."""
    sweep_dir = tmp_path / "sweep"
    release = tmp_path / "release"
    shared = (
        *TINY,
        *DDP,
        "trainer.max_steps=8",
        "scheduler.milestones=[4,6]",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "+callbacks.wait._target_=probes.WaitAtStep",
        "+callbacks.wait.output_dir=${paths.output_dir}",
    )
    command = [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        "-m",
        *ray_site(ray_cluster, cpus=2, WAIT_AT_STEP="5", WAIT_RELEASE=str(release)),
        *shared,
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
        exclude_shared_keys(list(shared)),
    ]
    sweep = subprocess.Popen(
        command, cwd=tmp_path, env=command_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while (
            len(list(sweep_dir.glob("*/waiting_at_step"))) < 2 and sweep.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        assert len(list(sweep_dir.glob("*/waiting_at_step"))) == 2, "the two jobs did not both reach step 5"
        ray_cluster_script("kill-worker")
        release.touch()
        output, _ = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
        ray_cluster_script("start")  # the worker node back, for the tests after this one
    assert sweep.returncode == 0, output[-4000:]
    results = {seed: metrics(sweep_dir / f"seed={seed}") for seed in (0, 1)}
    assert all(result["steps"] == 8 for result in results.values()), results
    resumed = [seed for seed, result in results.items() if result["resumed_from"] is not None]
    assert len(resumed) == 1 and results[resumed[0]]["resumed_from"] == 4, results
    log = (sweep_dir / f"seed={resumed[0]}" / "train.log").read_text()
    assert re.search(r"resuming from .*last\.ckpt \(step 4\)", log), log
    assert not processes_of(sweep_dir), processes_of(sweep_dir)


def test_a_request_no_node_can_meet_is_one_error_line(ray_cluster: str, tmp_path: Path) -> None:
    for overrides, asked, change in (
        (("hydra.launcher.ray.remote.num_cpus=64",), "64 CPUs", "hydra.launcher.ray.remote.num_cpus"),
        (
            ("trainer.accelerator=gpu",),
            "1 CPU, 1 GPU",
            "hydra.launcher.ray.remote.num_gpus (it follows trainer.accelerator",
        ),
    ):
        completed = train_sweep(
            *ray_site(ray_cluster), *TINY, *overrides, "seed=0", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path
        )
        assert completed.returncode == 2, describe(completed)
        assert "Traceback" not in completed.output
        errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0] == completed.stderr.strip().splitlines()[-1], describe(completed)
        assert f"asks Ray for {asked} on one node, but the cluster's largest node has 2 CPUs, no GPUs" in errors[0], (
            errors[0]
        )
        assert f"Change {change}" in errors[0], errors[0]
        assert not list((tmp_path / "sweep").glob("*/metrics.json"))
