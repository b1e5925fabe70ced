"""DDP jobs under Hydra: every process of a job is a child of the job's own process, which watches them.

Lightning's subprocess launcher keeps rank 0 in the launching process and starts the other
ranks by re-running the command line. Inside a Hydra multirun the launching process is the
sweep itself (or a joblib worker), and Lightning 2.6.6 ties the two together: its process
observer SIGKILLs the launching process when a child dies (taking the whole sweep with it), a
rank 0 that raises leaves its children running, a rank 0 killed kills the sweep, and the job
changes the sweep's thread count and environment.

Here the job's process starts *all* its ranks (0 included) as children that compose exactly
this job's config (its overrides, no sweep) in this job's output directory, the way a cluster's
launcher (torchrun, srun) would: Lightning sees ``LOCAL_RANK`` and creates no processes. The job's
process only waits. When a rank fails, the others get ``FAILED_RANK_GRACE_S`` seconds to stop
by themselves (a collective stop, such as a diverged loss, ends them all at the same step), then
are killed; the job fails with :class:`DDPProcessFailed` and the sweep goes on with the next job.
SIGTERM, USR1 and the requeue signal reaching the job's process are passed on to the ranks, which
save a checkpoint and stop (:mod:`resnet_cifar.launch.preemption`).
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig

from resnet_cifar.launch.preemption import STOP_SIGNALS, not_main_thread

log = logging.getLogger(__name__)
FAILED_RANK_GRACE_S = 10.0
POLL_S = 0.2
# Where Hydra's own, the app's and the structured configs come from; other sources were added by the user.
BUILT_IN_CONFIG_SOURCES = ("hydra", "main", "schema")


class DDPProcessFailed(RuntimeError):
    """A DDP process of this job failed; the job's other processes were stopped."""


def child_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and working directory of DDP process ``local_rank`` of the current job."""
    hydra = HydraConfig.get()
    command = [sys.executable, "-m", "resnet_cifar.train", *hydra.overrides.task]
    name = hydra.job.name if local_rank == 0 else f"{hydra.job.name}_rank{local_rank}"  # log: <name>.log
    # The config folders that the command line added (--config-dir, hydra.searchpath), which may
    # hold this site's conf/local/default.yaml: every process composes the job's config from them.
    added = [
        f"'{s.schema}://{s.path}'" for s in hydra.runtime.config_sources if s.provider not in BUILT_IN_CONFIG_SOURCES
    ]
    if added:
        command.append(f"hydra.searchpath=[{','.join(added)}]")
    command += [
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        # The job's config is written once the run is accepted (train.save_composed_config).
        "hydra.output_subdir=null",
        f"hydra.job.name={name}",
    ]
    return command, hydra.runtime.cwd


def run_ddp_processes(trainer: L.Trainer, grace_s: float = FAILED_RANK_GRACE_S) -> None:
    """Run this job in the DDP processes of this node that ``trainer`` asks for, and wait for them.

    The environment is the one Lightning's launcher gives its children (its cluster environment's
    address, port and node rank). Raises :class:`DDPProcessFailed` when a process fails.
    """
    environment = trainer.strategy.cluster_environment
    shared = {
        "MASTER_ADDR": environment.main_address,
        "MASTER_PORT": str(environment.main_port),
        "NODE_RANK": str(environment.node_rank()),
        "WORLD_SIZE": str(trainer.num_devices * trainer.num_nodes),
    }
    processes: list[subprocess.Popen] = []
    received: list[int] = []
    with passing_on_stop_signals(processes, received):
        try:
            for local_rank in range(trainer.num_devices):
                command, cwd = child_command(local_rank)
                env = {**os.environ, **shared, "LOCAL_RANK": str(local_rank)}
                processes.append(subprocess.Popen(command, cwd=cwd, env=env))
            log.info("DDP: %d processes on this node (pids %s)", len(processes), [p.pid for p in processes])
            failures = wait_for_ranks(processes, grace_s)
        finally:
            stop_all(processes)
    if received:  # the ranks saved and stopped on it; so does this process (and a sweep it runs)
        raise SystemExit(128 + received[0])
    if failures:
        failed = DDPProcessFailed(
            f"DDP process {'; '.join(failures)}; this job's other processes were stopped. "
            "Rerun the same command (same hydra.run.dir or hydra.sweep.dir) to resume from checkpoints/last.ckpt"
        )
        log.error("%s", failed)  # now: a sweep reports only its first failed job at its end
        raise failed


def wait_for_ranks(processes: list[subprocess.Popen], grace_s: float) -> list[str]:
    """Wait until every process exited, or one failed and the others had ``grace_s`` to follow.
    Returns what went wrong, one entry per failed process, the first to fail first (among those
    seen failing at once, the ones killed by a signal: the others likely failed for want of them)."""
    failed: list[int] = []  # local ranks, in the order their failure was seen
    deadline = None
    while True:
        running = [p.poll() is None for p in processes]
        new = [rank for rank, p in enumerate(processes) if p.returncode and rank not in failed]
        failed += sorted(new, key=lambda rank: processes[rank].returncode > 0)
        if not any(running):
            break
        if failed and deadline is None:
            deadline = time.monotonic() + grace_s
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    return [describe_exit(rank, processes[rank]) for rank in failed]


def describe_exit(local_rank: int, process: subprocess.Popen) -> str:
    code = process.returncode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    return f"local rank {local_rank} (pid {process.pid}) {how}"


def stop_all(processes: list[subprocess.Popen]) -> None:
    """SIGKILL the processes still running (a rank left waiting in a collective for a dead peer
    would wait until the timeout), and reap them all."""
    for process in processes:
        if process.poll() is None:
            log.warning("DDP: stopping local rank process %d", process.pid)
            process.kill()
    for process in processes:
        process.wait()


@contextlib.contextmanager
def passing_on_stop_signals(processes: list[subprocess.Popen], received: list[int]) -> Iterator[None]:
    """Pass SIGTERM, USR1 and the requeue signal on to ``processes`` (the ranks save and stop together),
    noting them in ``received``."""
    if not_main_thread():
        yield
        return

    def pass_on(signum: int, frame: object) -> None:
        log.info("DDP: passing %s on to this job's processes", signal.Signals(signum).name)
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def ddp_job() -> Iterator[None]:
    """Run one Hydra job and leave no trace of it for the next job of a sweep.

    Afterwards the environment variables (Lightning's MASTER_PORT, LOCAL_RANK, ...; the seed's
    PL_GLOBAL_SEED; OMP_NUM_THREADS), torch's thread count and the process group are as before:
    otherwise the next job would, say, take LOCAL_RANK as a sign that its processes exist already,
    or train with the thread count of one DDP process.
    """
    environment = dict(os.environ)
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environment)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
