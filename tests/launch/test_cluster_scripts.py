"""scripts/ray_cluster.sh and scripts/slurm_cluster.sh leave the machine as they found it: `stop`
ends what `start` started, and removes what only that cluster used, and nothing else.

.ci/run starts the shared Ray and SLURM clusters before the suite and stops them after it, and the
tests marked `ray` and `slurm` run jobs on them meanwhile. So these tests never stop those: each
starts a cluster of its own beside them and stops that one. The Ray script takes its ports and
folders from the environment, so a second cluster runs on other ports with its own folders (Ray's
temp folder too, through RAY_TMPDIR, which `ray start` and ray.init() both read). SLURM's
daemons have fixed ports and files (/etc/slurm/slurm.conf, munge's socket), so the SLURM script
runs as it would on a machine of its own: in Linux namespaces of its own (processes, network,
host name, mounts), with what it writes to /etc, /run and /var kept in a tmpfs; the namespaces'
processes all end with the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from commands import REPO, assert_ok, describe, processes_of, run_command

RAY_SCRIPT = REPO / "scripts" / "ray_cluster.sh"
SLURM_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
# A user's script on the same machine: ray.init() with no address.
PLAIN_RAY_INIT = """
import ray

ray.init(num_cpus=1)
print("joined", ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now, for a cluster beside the shared one."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ray_settings(folder: Path) -> dict[str, str]:
    """scripts/ray_cluster.sh's settings for a cluster of its own, with its files in ``folder``."""
    port, dashboard, worker, client = free_ports(4)
    return {
        "RAY_TMPDIR": str(folder),
        "RAY_CLUSTER_DIR": str(folder / "cluster"),
        "RAY_CLUSTER_PORT": str(port),
        "RAY_CLUSTER_DASHBOARD_PORT": str(dashboard),
        "RAY_CLUSTER_WORKER_PORT": str(worker),
        "RAY_CLUSTER_CLIENT_PORT": str(client),
        "RAY_CLUSTER_CPUS": "1",
        # As in the script: no token file written to the home folder.
        "RAY_AUTH_MODE": "disabled",
    }


@pytest.mark.ray
@pytest.mark.slow
def test_after_ray_script_stop_ray_init_starts_its_own(tmp_path: Path) -> None:
    """After `stop`, a plain ray.init() starts a Ray of its own instead of trying to join the
    stopped head (which it did for minutes, while Ray's record of the head was left behind)."""
    pytest.importorskip("ray")
    # A short folder: Ray's socket paths in it must stay within 107 characters.
    with tempfile.TemporaryDirectory(prefix="ray-stop-") as short:
        folder = Path(short)
        settings = ray_settings(folder)
        ray_temp = folder / "ray"
        another_session = ray_temp / "session_of_another_ray"
        another_session.mkdir(parents=True)
        record = ray_temp / "ray_current_cluster"
        try:
            assert_ok(run_command([RAY_SCRIPT, "start"], tmp_path, **settings))
            assert record.read_text().endswith(f":{settings['RAY_CLUSTER_PORT']}")
            assert list(ray_temp.glob("session_2*")) and (folder / "cluster").is_dir()
            assert_ok(run_command([RAY_SCRIPT, "stop"], tmp_path, **settings))
        finally:
            run_command([RAY_SCRIPT, "stop"], tmp_path, **settings)
        assert not processes_of(folder), processes_of(folder)
        assert not record.exists()
        assert not list(ray_temp.glob("session_2*")) and not (ray_temp / "session_latest").exists()
        assert another_session.is_dir()
        assert not (folder / "cluster").exists()

        completed = run_command([sys.executable, "-c", PLAIN_RAY_INIT], tmp_path, timeout=180, **settings)
        assert completed.returncode == 0, describe(completed)
        assert "Started a local Ray instance" in completed.output, describe(completed)
        joined = completed.stdout.split("joined ")[-1].strip()
        assert not joined.endswith(f":{settings['RAY_CLUSTER_PORT']}"), joined


def test_ray_script_stop_leaves_other_rays_files(tmp_path: Path) -> None:
    """`stop` with this cluster not running (stopped twice, or never started) removes nothing of
    another Ray's: its record, its sessions, the pointer to its latest session."""
    pytest.importorskip("ray")
    settings = ray_settings(tmp_path)
    ray_temp = tmp_path / "ray"
    session = ray_temp / "session_2026-01-01_00-00-00_000000_1"
    (session / "logs").mkdir(parents=True)
    (ray_temp / "session_latest").symlink_to(session)
    (ray_temp / "ray_current_cluster").write_text("10.0.0.2:6379")
    assert_ok(run_command([RAY_SCRIPT, "stop"], tmp_path, **settings))
    assert (ray_temp / "ray_current_cluster").read_text() == "10.0.0.2:6379"
    assert (ray_temp / "session_latest").resolve() == session and (session / "logs").is_dir()
    assert not (tmp_path / "cluster").exists()


# Run by bash in namespaces of its own (see the module's docstring), with the script's path and a
# folder for what it finds: the processes left after each `stop`.
SLURM_START_AND_STOP = r"""
set -euo pipefail
cluster=$1 found=$2
mkdir -p "$found/scratch"
mount -t tmpfs tmpfs "$found/scratch"
for dir in /etc /run /var/lib /var/log; do
  mkdir -p "$found/scratch$dir/upper" "$found/scratch$dir/work"
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$found/scratch$dir/upper,workdir=$found/scratch$dir/work" "$dir"
done
hostname slurm-stop-test
# SLURM's daemons listen where getaddrinfo() finds an address, which needs one that is not loopback.
ip link set lo up
ip addr add 10.254.0.1/32 dev lo
echo "10.254.0.1 slurm-stop-test" >>/etc/hosts
export SLURM_CLUSTER_DIR=/var/lib/resnet-cifar-slurm-test

# The script starts munged; a job runs when it stops.
"$cluster" start
job=$(sbatch --parsable --wrap "sleep 600")
for _ in $(seq 60); do
  [[ $(squeue --noheader --jobs="$job" --format=%T) == RUNNING ]] && break
  sleep 1
done
ps -eo comm= >"$found/while_a_job_runs"
"$cluster" stop
ps -eo comm= >"$found/after_stop"
ls -A /etc/slurm/slurm.conf "$SLURM_CLUSTER_DIR" >"$found/files_after_stop" 2>/dev/null || true

# A munged that ran before start (the machine's own) runs on.
if id munge >/dev/null 2>&1; then runuser -u munge -- munged; else munged --force; fi
pgrep -x munged >"$found/machines_munged"
"$cluster" start
"$cluster" stop
ps -eo pid=,comm= >"$found/after_stop_with_machines_munged"
"""


@pytest.mark.slurm
def test_slurm_script_stop_ends_what_its_start_started(tmp_path: Path) -> None:
    if shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed (no sbatch): run `sudo scripts/slurm_cluster.sh start`")
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no {' or '.join(missing)} (util-linux, iproute2) to give the test cluster a machine of its own")
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if as_root and subprocess.run([*as_root, "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root, as scripts/slurm_cluster.sh does")
    namespaces = ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--propagation=private", "--net", "--uts"]
    found = tmp_path / "found"
    completed = run_command(
        [*as_root, *namespaces, "bash", "-c", SLURM_START_AND_STOP, "bash", SLURM_SCRIPT, found], tmp_path, timeout=400
    )
    assert completed.returncode == 0, describe(completed)

    def processes(name: str) -> list[list[str]]:
        return [line.split() for line in (found / name).read_text().splitlines()]

    daemons = {"munged", "slurmctld", "slurmd", "slurmstepd", "sleep"}
    assert daemons <= {comm for (comm,) in processes("while_a_job_runs")}, processes("while_a_job_runs")
    assert not daemons & {comm for (comm,) in processes("after_stop")}, processes("after_stop")
    assert (found / "files_after_stop").read_text() == ""
    machines_munged = (found / "machines_munged").read_text().split()
    assert len(machines_munged) == 1
    left = processes("after_stop_with_machines_munged")
    assert [pid for pid, comm in left if comm in daemons] == machines_munged, left
