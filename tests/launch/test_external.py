"""Runs that srun and torchrun start, as users launch them without Hydra's launchers: the run
directory every process names alike, SLURM's tasks checked against the trainer, when a job is
requeued, and torchrun on one node and on two, writing one run directory without false advice.
srun in an salloc allocation and an sbatch script of one's own: test_own_slurm_scripts.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from commands import command_environment, describe
from resnet_cifar.errors import ConfigError
from resnet_cifar.launch.external import SlurmTasks, launched_run_name, tasks_per_node
from resnet_cifar.launch.preemption import SCONTROL_FIELDS, requeue_refusal
from tiny_runs import TINY_SYNTHETIC_RUN

TINY_DDP = (
    *TINY_SYNTHETIC_RUN,
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.max_steps=4",
    "scheduler.milestones=[2,3]",
    "~callbacks.progress_bar",
    "~callbacks.input_preview",
)
# Each process writes probe_rank<r>.json into the run directory it composed.
PROBE = ("+callbacks.probe._target_=probes.RecordTrainingImages", "+callbacks.probe.output_dir=${paths.output_dir}")
FALSE_ADVICE = ("sync_dist", "The `srun` command is available on your system but is not used")
LAUNCH_VARIABLES = (
    "SLURM_",
    "TORCHELASTIC_",
    "RANK",
    "LOCAL_RANK",
    "GROUP_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_",
)


def outside_any_job(**extra: str) -> dict[str, str]:
    """The commands' environment without a SLURM job's or torchrun's variables (the tests may run in one)."""
    env = command_environment(**extra)
    return {key: value for key, value in env.items() if key in extra or not key.startswith(LAUNCH_VARIABLES)}


def run(command: list[str], cwd: Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        command, cwd=cwd, env=outside_any_job(**extra), capture_output=True, text=True, timeout=timeout, check=False
    )
    completed.output = completed.stdout + completed.stderr
    return completed


def the_one_run_dir(cwd: Path) -> Path:
    runs = list((cwd / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def assert_one_ddp_run_of_two(run_dir: Path, output: str, steps: int = 4) -> None:
    """Both processes trained in ``run_dir`` as ranks of one world of two, and said nothing false."""
    records = [json.loads((run_dir / f"probe_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2] and [r["steps"] for r in records] == [steps, steps]
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == steps
    for advice in FALSE_ADVICE:
        assert advice not in output, output[-4000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args, "-m", "resnet_cifar.train"]


# --- the run directory's name, and SLURM's tasks ---------------------------------------------------


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process without a SLURM job's or torchrun's variables; the test sets its own."""
    for name in list(os.environ):
        if name.startswith(LAUNCH_VARIABLES):
            monkeypatch.delenv(name)
    return monkeypatch


TORCHRUN = {"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2"}


@pytest.mark.parametrize(
    "environment,name",
    [
        ({}, "2026-01-02_03-04-05"),
        ({"SLURM_JOB_ID": "41"}, "2026-01-02_03-04-05"),  # salloc's own shell: no process of SLURM's
        ({"SLURM_JOB_ID": "41", "SLURM_PROCID": "0"}, "slurm-41"),  # the batch script's
        (
            {"SLURM_JOB_ID": "41", "SLURM_PROCID": "1", "SLURM_STEP_ID": "0", "SLURM_RESTART_COUNT": "2"},
            "slurm-41.0",
        ),  # srun's
        ({**TORCHRUN, "TORCHELASTIC_RUN_ID": "study-7"}, "torchrun-study-7"),
        (
            {
                **TORCHRUN,
                "TORCHELASTIC_RUN_ID": "none",
                "SLURM_JOB_ID": "41",
                "SLURM_PROCID": "0",
                "SLURM_STEP_ID": "3",
            },
            "slurm-41.3",
        ),
    ],
    ids=["alone", "salloc-shell", "sbatch", "srun", "torchrun", "torchrun-in-srun"],
)
def test_all_processes_and_requeues_share_one_run_directory(environment, name, no_launcher) -> None:
    for key, value in environment.items():
        no_launcher.setenv(key, value)
    assert launched_run_name("2026-01-02_03-04-05") == name


def test_torchrun_without_rendezvous_id_is_one_error_line(no_launcher, capsys) -> None:
    for key, value in {**TORCHRUN, "TORCHELASTIC_RUN_ID": "none"}.items():
        no_launcher.setenv(key, value)
    with pytest.raises(SystemExit) as exited:
        launched_run_name("2026-01-02_03-04-05")
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("error: torchrun starts processes") and "hydra.run.dir=" in lines[0]
    ), lines


@pytest.mark.parametrize("layout,counts", [("2", [2]), ("2(x3)", [2, 2, 2]), ("3,1", [3, 1]), ("2(x2),1", [2, 2, 1])])
def test_tasks_per_node_are_read_from_slurms_compact_form(layout, counts, no_launcher) -> None:
    no_launcher.setenv("SLURM_STEP_TASKS_PER_NODE", layout)
    assert tasks_per_node() == counts


# Lightning's srun hint, false for srun's tasks in an salloc allocation: the train command drops it (test_quiet.py).
@pytest.mark.filterwarnings("ignore:The `srun` command is available")
def test_slurm_tasks_must_match_the_trainers_devices_and_nodes(no_launcher) -> None:
    # srun -n 2 in an allocation of `salloc -n 2` (no --ntasks-per-node, which Lightning's own check wants).
    for key, value in {
        "SLURM_JOB_ID": "41",
        "SLURM_PROCID": "0",
        "SLURM_STEP_ID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NTASKS": "2",
        "SLURM_JOB_NAME": "interactive",
        "SLURM_STEP_TASKS_PER_NODE": "2",
        "SLURM_STEP_NUM_TASKS": "2",
    }.items():
        no_launcher.setenv(key, value)
    environment = SlurmTasks()
    assert environment.auto_requeue is False and environment.world_size() == 2
    environment.validate_settings(num_devices=2, num_nodes=1)
    with pytest.raises(
        ConfigError,
        match=r"SLURM started 2 task\(s\) per node on 1 node\(s\), but the trainer asks for trainer.devices=4",
    ):
        environment.validate_settings(num_devices=4, num_nodes=1)
    no_launcher.setenv("SLURM_STEP_TASKS_PER_NODE", "3,1")
    with pytest.raises(
        ConfigError, match=r"SLURM started 3\+1 tasks on the 2 nodes; DDP needs the same number on each"
    ):
        environment.validate_settings(num_devices=2, num_nodes=2)


def test_requeued_only_if_slurm_may_and_the_job_is_not_ending() -> None:
    line = (
        "JobId=47 JobName=resnet-cifar UserId=root(0) Priority=1 JobState=RUNNING Reason=None Dependency=(null) "
        "Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 WorkDir=/tmp/a b"
    )  # as scontrol --oneliner prints it
    fields = dict(SCONTROL_FIELDS.findall(line))
    assert fields == {"JobState": "RUNNING", "Requeue": "1", "BatchFlag": "1"} and requeue_refusal(fields) is None
    assert "ending (JobState=COMPLETING" in requeue_refusal(
        {**fields, "JobState": "COMPLETING"}
    )  # scancel, a time limit
    assert "interactive allocation (salloc)" in requeue_refusal({**fields, "BatchFlag": "0"})
    assert "--no-requeue" in requeue_refusal({**fields, "Requeue": "0"})
    assert requeue_refusal({}) is None  # scontrol could not tell: try


# --- torchrun -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_on_one_node_writes_one_run_directory(tmp_path: Path) -> None:
    """No hydra.run.dir: torchrun's processes share its rendezvous id, and so the directory."""
    completed = run([*torchrun("--nproc_per_node=2"), *TINY_DDP, *PROBE], tmp_path)
    assert completed.returncode == 0, describe(completed)
    run_dir = the_one_run_dir(tmp_path)
    assert run_dir.name.startswith("torchrun-"), run_dir
    assert_one_ddp_run_of_two(run_dir, completed.output)


@pytest.mark.slow
def test_torchrun_on_two_nodes_writes_one_run_directory(tmp_path: Path) -> None:
    """Two torchrun agents on this machine, as on two nodes, meeting at a c10d rendezvous."""
    command = [
        *torchrun(
            "--nnodes=2",
            "--nproc_per_node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            "--rdzv-id=study-7",
        ),
        *TINY_DDP,
        "trainer.num_nodes=2",
        "trainer.devices=1",
        *PROBE,
    ]
    nodes = [
        subprocess.Popen(
            command, cwd=tmp_path, env=outside_any_job(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    run_dir = the_one_run_dir(tmp_path)
    assert run_dir.name == "torchrun-study-7"
    assert_one_ddp_run_of_two(run_dir, "\n".join(outputs))


@pytest.mark.slow
def test_torchrun_without_shared_run_dir_is_refused_first(tmp_path: Path) -> None:
    # --master-port: torchrun's static rendezvous, whose id is "none".
    completed = run([*torchrun("--nproc_per_node=2", f"--master-port={free_port()}"), *TINY_DDP], tmp_path)
    assert completed.returncode != 0, describe(completed)
    errors = {line for line in completed.stderr.splitlines() if line.startswith("error:")}
    assert len(errors) == 1, describe(completed)  # one line, said alike by each process
    assert "give hydra.run.dir=... (the same on every node) or torchrun --rdzv-id=<id>" in errors.pop()
    assert not (tmp_path / "outputs").exists()
