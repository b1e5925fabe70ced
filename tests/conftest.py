"""Shared fixtures: tiny trained runs, a small fake image folder, the environment of trusted
targets, and the local SLURM and Ray clusters. Plain helpers are modules of this folder
(commands.py, tiny_runs.py, run_outputs.py, fake_cifar.py, ...), importable because
pyproject.toml puts this folder on pytest's ``pythonpath``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from commands import REPO
from fake_cifar import write_image_folder
from tiny_runs import TINY_SYNTHETIC_RUN, Run, run_training, tiny_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last checkpoint of a tiny run: the project's own."""
    run_dir = tmp_path_factory.mktemp("run")
    run_training(run_dir, *TINY_SYNTHETIC_RUN, "trainer.max_steps=2")
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def finished_run(trained: Path) -> Path:
    """The folder of ``trained``'s run: a finished two-step run of depth 8."""
    run_dir = trained.parent.parent
    assert (run_dir / "metrics.json").is_file()
    return run_dir


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A tiny synthetic run of the smoke experiment (tiny_runs.tiny_run, SMOKE_STEPS steps)."""
    return tiny_run(tmp_path_factory.mktemp("train"), "smoke")


@pytest.fixture
def no_networks_allowed_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Networks are allowed only as the test says: not through this environment's variable."""
    from resnet_cifar.allowed_networks import ENVIRONMENT_VARIABLE

    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)


@pytest.fixture(scope="session")
def image_folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake CIFAR-10 image folder: 30 train and 10 test PNG images per class.

    The first run on it writes ``cifar10-uint8.pt`` beside the folders; copy the folder before
    changing anything in it.
    """
    return write_image_folder(tmp_path_factory.mktemp("image_folder"), 30, 10)


# --- the local SLURM cluster (scripts/slurm_cluster.sh) for the tests marked `slurm` ---


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The SLURM cluster that scripts/slurm_cluster.sh started; tests skip where SLURM is not
    installed, and fail where it is installed but no cluster answers (CI starts it in .ci/run)."""
    if shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed (no sbatch): run `sudo scripts/slurm_cluster.sh start`")
    answer = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, check=False)
    if answer.returncode != 0 or not answer.stdout.split():
        pytest.fail(
            f"no SLURM cluster answers ({answer.stderr.strip()}): start one with `sudo scripts/slurm_cluster.sh start`"
        )


@pytest.fixture
def release_requeued_jobs(slurm_cluster: None):
    """SLURM holds a requeued batch job for 2 minutes (reason BeginTime) before it may start again;
    while a test runs, such jobs are released after a few seconds (scontrol update StartTime=now).
    Not at once: a job started again on the same node within a second of its requeue may find its
    previous attempt's credential still revoked, and SLURM then fails it ("Killing non-startable
    batch job: Job credential revoked", seen on the test cluster)."""
    stop = threading.Event()
    waiting_since: dict[str, float] = {}

    def release() -> None:
        while not stop.wait(1.0):
            listed = subprocess.run(
                ["squeue", "--noheader", "--states=PENDING", "--format=%i %r"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            held = {line.split()[0] for line in listed.splitlines() if line.split()[1:2] == ["BeginTime"]}
            for job_id in list(waiting_since):
                if job_id not in held:
                    del waiting_since[job_id]
            for job_id in held:
                if time.monotonic() - waiting_since.setdefault(job_id, time.monotonic()) >= 6:
                    subprocess.run(
                        ["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True, check=False
                    )

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


# --- the local Ray cluster (scripts/ray_cluster.sh) for the tests marked `ray` ---

REQUIRE_RAY = "RESNET_CIFAR_REQUIRE_RAY"


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """The address of the two-node Ray cluster that scripts/ray_cluster.sh started. Tests skip
    where Ray is not installed, or where no cluster runs, unless RESNET_CIFAR_REQUIRE_RAY=1 (CI,
    .ci/run): then a missing cluster fails them."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed: pip install -e '.[ray]'")
    script = REPO / "scripts" / "ray_cluster.sh"
    address = subprocess.run([script, "address"], capture_output=True, text=True, check=True).stdout.strip()
    host, _, port = address.rpartition(":")
    try:  # `ray status` takes most of a minute to give up on an address where nothing listens
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError:
        active = 0
    else:
        status = subprocess.run(["ray", "status", f"--address={address}"], capture_output=True, text=True, check=False)
        active = (
            status.stdout.split("Active:")[-1].split("Pending:")[0].count(" node_") if status.returncode == 0 else 0
        )
    if active < 2:
        start = f"{script.relative_to(REPO)} start"
        problem = f"no two-node Ray cluster answers at {address} ({active} live nodes): start it with `{start}`"
        if os.environ.get(REQUIRE_RAY) == "1":
            pytest.fail(f"{problem} ({REQUIRE_RAY}=1)")
        pytest.skip(problem)
    return address
