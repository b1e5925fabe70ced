"""Shared fixtures: the command-line entry points as subprocesses, and small fake data roots."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fake_cifar import write_image_folder

# Short CPU runs: the smallest network (depth 8 = 6n+2 with n=1), small batches, few steps.
TINY_RUN = (
    "experiment=smoke",
    "model.depth=8",
    "data.batch_size=32",
    "data.eval_batch_size=50",
    "data.val_size=50",
    "trainer.log_every_n_steps=2",
)
# On synthetic data (300 training images before the split, 100 test images).
TINY_SYNTHETIC_RUN = (*TINY_RUN, "data.synthetic_sizes=[300,100]")
# On files: add data.root=<image_folder_root> (30 training and 10 test images per class).
TINY_IMAGE_FOLDER_RUN = (*TINY_RUN, "data=cifar10")

RunCli = Callable[..., subprocess.CompletedProcess]
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CONF = REPO / "conf"


def compose_train(overrides: Sequence[str] = (), tmp_path: Path | None = None) -> Any:
    """conf/train.yaml composed with ``overrides`` as the train command would, without running it;
    with ``tmp_path``, as a run in that directory (``${hydra:runtime.output_dir}``, ``paths.*``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from resnet_cifar.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    if tmp_path is not None:
        cfg.hydra.runtime.output_dir = str(tmp_path)
        HydraConfig.instance().set_config(cfg)
    return cfg


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """The messages logged at INFO and above while the block runs (what a command would print)."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def run_training(output_dir: Path, *overrides: str) -> dict[str, Any]:
    """Train in this process as ``python -m resnet_cifar.train <overrides>`` would in ``output_dir``
    (the Python API: compose_config, then train); returns metrics.json's values."""
    from resnet_cifar.train import compose_config, train

    return train(compose_config(overrides, output_dir=output_dir))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last checkpoint of a tiny run: the project's own."""
    run_dir = tmp_path_factory.mktemp("run")
    run_training(run_dir, *TINY_SYNTHETIC_RUN, "trainer.max_steps=2")
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture
def no_trusted_targets_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets are trusted only as the test says: not through this environment's variable."""
    from resnet_cifar.trusted_targets import ENVIRONMENT_VARIABLE

    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)


def command_environment(**extra: str) -> dict[str, str]:
    """The environment of the commands under test: this one without HYDRA_FULL_ERROR (Hydra's
    short error messages are part of what is tested), unbuffered output, and this folder on
    PYTHONPATH (the test-only callbacks of probes.py), plus ``extra`` (a PYTHONPATH there goes first)."""
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    pythonpath = os.pathsep.join(
        filter(None, [extra.pop("PYTHONPATH", None), str(TESTS), os.environ.get("PYTHONPATH")])
    )
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath, **extra)
    return env


def run_command(command: list[Any], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run ``command`` in ``cwd`` (created if need be) in :func:`command_environment` with ``env``,
    as a user would: a fresh process. The result also has ``.output``: stdout and stderr together."""
    cwd.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=command_environment(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    completed.output = completed.stdout + completed.stderr
    return completed


def run_cli(module: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m resnet_cifar.<module> <args>`` in ``cwd`` with :func:`run_command`.

    Pass ``hydra.run.dir=...`` (or ``hydra.sweep.dir=...``) under a temporary folder: Hydra's
    default output folder is relative to the working directory.
    """
    return run_command([sys.executable, "-m", f"resnet_cifar.{module}", *args], cwd, timeout)


def processes_of(directory: Path) -> list[str]:
    """Command lines of the processes still running with ``directory`` in them."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline and proc.name != str(os.getpid()):
            found.append(cmdline)
    return found


def describe(completed: subprocess.CompletedProcess, tail: int = 4000) -> str:
    """The command, its exit status and the end of its output, for assertion messages."""
    return f"{' '.join(map(str, completed.args))}\nexit status {completed.returncode}\n...{completed.output[-tail:]}"


def assert_ok(completed: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert completed.returncode == 0, describe(completed)
    assert "Traceback" not in completed.output, describe(completed)
    return completed


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def logged_input_grids(run_dir: Path) -> list[Any]:
    """The input grids (PIL images) that a run's LogInputsOnce wrote to its TensorBoard events."""
    import io

    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return [Image.open(io.BytesIO(event.encoded_image_string)) for event in events.Images("inputs/augmented_batch")]


def summaries(run_dir: Path, tag: str) -> list[Any]:
    """Every summary value tagged ``tag`` in all of the run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    values = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            values += [value for value in event.summary.value if value.tag == tag]
    return values


@pytest.fixture(scope="session", name="run_cli")
def run_cli_fixture() -> RunCli:
    """:func:`run_cli` as a fixture (session-scoped, so module-scoped fixtures can use it)."""
    return run_cli


@pytest.fixture(scope="session")
def image_folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake CIFAR-10 image folder: 30 train and 10 test PNG images per class.

    The first run on it writes ``cifar10-uint8.pt`` beside the folders; copy the folder before
    changing anything in it.
    """
    return write_image_folder(tmp_path_factory.mktemp("image_folder"), 30, 10)


def report_row(report: str, variant: str, depth: int) -> list[str]:
    """The cells of report.md's table row for ``variant`` and ``depth`` (exactly one)."""
    rows = [line for line in report.splitlines() if line.startswith(f"| {variant} | {depth} |")]
    assert len(rows) == 1, report
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


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
