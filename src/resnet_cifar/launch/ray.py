"""``hydra/launcher=ray``: Hydra's Ray launcher (hydra-ray-launcher), made to report and to resume.

Each job of a sweep runs as one Ray task, in a Ray worker process, on whichever node has the
resources it asks for; a DDP job's task starts the job's processes on that node itself
(:mod:`resnet_cifar.launch.ddp`). What it adds to the plugin's launcher, whose ``launch`` ends in
``[ray.get(run) for run in runs]``:

- Resources follow the trainer (conf/hydra/launcher/ray.yaml): ``num_gpus`` is
  ``trainer.devices`` for GPU jobs and none for CPU jobs, per job, so a sweep over
  ``trainer.devices`` asks for what each job needs; the job's CPUs are shared among its processes
  (``OMP_NUM_THREADS``).
- A job that asks for more than any node of the cluster has ends the sweep before any job starts,
  with one ``error:`` line naming the request and the cluster's largest node.
- While jobs wait, every ``progress_every_s`` seconds one line: how many are pending, running
  and done (Ray's state API).
- A job that fails (an exception, a process killed, a DDP rank dying, a NaN) is reported failed
  while the others run on: the sweep ends with Hydra's report of the failed jobs once all ended.
- A job whose node is lost, or whose task process dies, is retried by Ray (``max_retries``) and
  resumes from its checkpoints/last.ckpt. A job stopped by SIGTERM saves at its current step
  (:mod:`resnet_cifar.launch.preemption`) and is retried the same way.
- Jobs run in the sweep's working directory (relative paths such as ``hydra.sweep.dir`` or
  ``data.root`` mean the same on every node); it must be on storage that every node shares.

Ray is imported only when a sweep is launched: Hydra imports this module (through
src/hydra_plugins/resnet_cifar) for every command.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as PluginRayLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from resnet_cifar.launch.cluster_jobs import (
    JobFailed,
    failed_job_return,
    failed_result,
    job_error,
    progress_line,
    refuse,
)
from resnet_cifar.launch.preemption import STOP_SIGNALS
from resnet_cifar.launch.ray_resources import describe_resources, refuse_unplaceable, resource_request

log = logging.getLogger(__name__)
PREEMPTED_EXIT_CODES = {128 + signum: signal.Signals(signum).name for signum in STOP_SIGNALS}
RUNNING_STATES = ("SUBMITTED_TO_WORKER", "RUNNING")


class JobPreempted(RuntimeError):
    """The job was stopped by SIGTERM (or SLURM's requeue signal) and saved its checkpoint;
    Ray retries it (``retry_exceptions``), and the retry resumes from that checkpoint."""


class SweepDirectoryMissing(RuntimeError):
    """The sweep's working directory is not on this node: it is not on shared storage."""


@dataclass
class RayJob:
    """One job of the sweep: its number, overrides, config, Ray task options, the threads of each
    of its processes, and its name in messages (:func:`name_jobs`)."""

    index: int
    overrides: list[str]
    config: DictConfig
    options: dict[str, Any]
    threads: int | None
    name: str = ""


class RayLauncher(PluginRayLauncher):
    """hydra-ray-launcher's RayLauncher with per-job resources, refusals of impossible requests,
    progress while waiting, failed jobs reported alone, and retries that resume.
    ``progress_every_s``: seconds between progress lines; ``poll_s``: seconds between looks at the
    jobs; ``autoscaling``: the cluster adds nodes on demand, so a job that fits none of its
    nodes now waits for one instead of being refused."""

    def __init__(
        self, ray: DictConfig, progress_every_s: float = 60, poll_s: float = 2, autoscaling: bool = False
    ) -> None:
        super().__init__(ray)
        self.progress_every_s = progress_every_s
        self.poll_s = poll_s
        self.autoscaling = autoscaling

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Ray launcher: {len(job_overrides)} jobs, sweep output dir: {sweep_dir}")
        jobs = [self._job(initial_job_idx + index, list(overrides)) for index, overrides in enumerate(job_overrides)]
        name_jobs(jobs)
        connect(self.ray_cfg.init)
        if not self.autoscaling:
            refuse_unplaceable(jobs, ray.nodes())
        task = ray.remote(run_job_in_task)
        state = Singleton.get_state()
        refs = []
        for job in jobs:
            log.info(f"\t#{job.index} : {' '.join(filter_overrides(job.overrides))}")
            options = {"name": f"job {job.name}", **job.options}
            refs.append(
                task.options(**options).remote(self.hydra_context, job.config, self.task_function, state, job.threads)
            )
        return self._wait_for(refs, jobs)

    def _job(self, index: int, overrides: list[str]) -> RayJob:
        """The job's config, as Hydra composes it for this job, and its Ray options (which follow its trainer)."""
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            # As the plugin does: the id a scheduler would give, and the job's number in the sweep.
            config.hydra.job.id = f"job_id_for_{index}"
            config.hydra.job.num = index
        if config.trainer.num_nodes != 1:
            refuse(
                f"job #{index} asks for trainer.num_nodes={config.trainer.num_nodes}, but hydra/launcher=ray runs each "
                "job on one node (a DDP job's processes all on it): use trainer.num_nodes=1 with trainer.devices up to "
                "a node's GPUs, or hydra/launcher=slurm for jobs across nodes"
            )
        remote = OmegaConf.to_container(config.hydra.launcher.ray.remote, resolve=True)
        options = {key: value for key, value in remote.items() if value is not None}
        # A preempted job saved its checkpoint: Ray retries it like one lost with its node.
        options.setdefault("retry_exceptions", [JobPreempted])
        devices = config.trainer.devices
        processes = devices if isinstance(devices, int) and devices > 0 else 1
        cpus = options.get("num_cpus")
        threads = max(1, int(cpus) // processes) if cpus else None
        return RayJob(index, overrides, config, options, threads)

    def _wait_for(self, refs: list[Any], jobs: list[RayJob]) -> list[JobReturn]:
        """Wait until every job ended, saying how they are doing; their results in order."""
        import ray

        index_of = {ref: index for index, ref in enumerate(refs)}
        results: dict[int, JobReturn] = {}
        waiting = list(refs)
        last_progress = time.monotonic()
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=self.poll_s)
            for ref in done:
                results[index_of[ref]] = job_result(ref, jobs[index_of[ref]])
            if waiting and time.monotonic() - last_progress >= self.progress_every_s:
                log.info(progress(waiting, [jobs[index_of[ref]] for ref in waiting], len(results), len(jobs)))
                last_progress = time.monotonic()
        return [results[index] for index in range(len(jobs))]


def name_jobs(jobs: list[RayJob]) -> None:
    """Name each job by its number and the overrides that tell it from the others, as its
    directory is named in a study: ``#3 (model.depth=20 seed=1)``."""
    shared = set.intersection(*(set(job.overrides) for job in jobs))
    for job in jobs:
        own = [override for override in filter_overrides(job.overrides) if override not in shared]
        job.name = f"#{job.index} ({' '.join(own)})" if own else f"#{job.index}"


def connect(init: DictConfig) -> None:
    """Connect to the cluster at ``init.address`` (``auto``, ``host:port``, ``ray://host:10001``),
    or start one on this machine when it is null; one ``error:`` line if that fails."""
    import ray

    fix = (
        "Start one with `ray start --head` or give its address: hydra.launcher.ray.init.address=auto "
        "(a cluster started on this machine), HOST:6379 or ray://HOST:10001; null starts one here"
    )
    address = init.get("address")
    if address and address not in ("auto", "local"):
        # ray.init waits minutes for an address where nothing listens: look first.
        host, _, port = str(address).removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except (OSError, ValueError) as error:
            refuse(f"no Ray cluster answers at hydra.launcher.ray.init.address={address} ({error}). {fix}")
    try:
        if not ray.is_initialized():  # this process may have connected for an earlier sweep
            log.info("Initializing Ray with hydra.launcher.ray.init: %s", OmegaConf.to_container(init))
            ray.init(**(OmegaConf.to_container(init, resolve=True) or {}))
    except (ConnectionError, ValueError, TypeError, RuntimeError) as error:
        said = " ".join(str(error).split())
        refuse(
            f"cannot start or reach the Ray cluster (hydra.launcher.ray.init: {OmegaConf.to_container(init)}): "
            f"{said}. {fix}"
        )
    nodes = [describe_resources(node["Resources"]) for node in ray.nodes() if node["Alive"]]
    log.info("Ray cluster of %d nodes: %s", len(nodes), "; ".join(nodes))


def progress(waiting: list[Any], jobs: list[RayJob], done: int, total: int) -> str:
    """How the jobs not done yet are doing, from Ray's state API; where it does not answer (say a
    ``ray://`` client without the dashboard), only how many are not done."""
    import ray
    from ray.util.state import list_tasks

    try:
        tasks = list_tasks(
            filters=[("job_id", "=", ray.get_runtime_context().get_job_id())],
            limit=10_000,
            raise_on_missing_output=False,
            timeout=30,
        )
    except Exception as error:  # the state API lives in the dashboard, which a cluster may not run
        line = progress_line("Ray", len(waiting), 0, done, total)
        return f"{line} (pending and running not told apart: Ray's state API: {error})"
    latest: dict[str, Any] = {}
    for task in tasks:
        if task.task_id not in latest or task.attempt_number > latest[task.task_id].attempt_number:
            latest[task.task_id] = task
    states = [latest.get(ref.task_id().hex()) for ref in waiting]
    running = sum(task is not None and task.state in RUNNING_STATES for task in states)
    line = progress_line("Ray", len(waiting) - running, running, done, total)
    pending = {
        describe_resources(resource_request(job.options))
        for job, task in zip(jobs, states)
        if task is None or task.state not in RUNNING_STATES
    }
    if pending:
        line += f"; pending jobs wait for a node with {' or '.join(sorted(pending))} free"
    retried = sum(task is not None and task.attempt_number > 0 for task in states)
    if retried:
        line += f"; {retried} retried (node or process lost, or preempted)"
    return line


def job_result(ref: Any, job: RayJob) -> JobReturn:
    """The JobReturn a job sent back; a failure, of the job or of its task, reported as this job's."""
    import ray

    try:
        result = ray.get(ref)
    except ray.exceptions.RayTaskError as error:  # raised in run_job_in_task (say preempted too often)
        cause = error.cause if getattr(error, "cause", None) is not None else error
        said = f"{type(cause).__name__}: {cause}"
    except ray.exceptions.RayError as error:  # its process or its node died, on every attempt
        attempts = job.options.get("max_retries", 3) + 1
        said = (
            f"its process or node was lost on each of its {attempts} attempts (hydra.launcher.ray.remote.max_retries="
            f"{attempts - 1}): {type(error).__name__}: {' '.join(str(error).split())}"
        )
    else:
        if result.status != JobStatus.FAILED:
            return result
        said = job_error(result)
    return failed_job_return(job.overrides, f"Ray job {job.name} failed: {said}")


def run_job_in_task(
    hydra_context: HydraContext,
    sweep_config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
    threads: int | None,
) -> JobReturn:
    """One job of the sweep, in a Ray worker: in the sweep's working directory, with the threads
    its CPUs allow, as Hydra's launchers run a job; a job stopped by SIGTERM raises
    :class:`JobPreempted` for Ray to retry. The worker's directory and threads are restored after."""
    import ray
    import torch

    from resnet_cifar.resolvers import register_resolvers

    register_resolvers()  # the command's module, which registers them, is not imported here
    cwd = Path(sweep_config.hydra.runtime.cwd)
    if not cwd.is_dir():
        node = ray.get_runtime_context().get_node_id()
        raise SweepDirectoryMissing(
            f"the sweep's working directory {cwd} does not exist on Ray node {node}: run the sweep from a directory on "
            "storage that every node shares, with the same path there (the code, hydra.sweep.dir and data.root too)"
        )
    before = os.getcwd(), os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    os.chdir(cwd)
    if threads:
        # Ray sets OMP_NUM_THREADS to the task's CPUs; a DDP job's processes share them.
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    try:
        setup_globals()
        Singleton.set_state(singleton_state)
        HydraConfig.instance().set_config(sweep_config)
        return run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except SystemExit as stopped:
        if stopped.code in PREEMPTED_EXIT_CODES:
            raise JobPreempted(
                f"stopped by {PREEMPTED_EXIT_CODES[stopped.code]}; it saved checkpoints/last.ckpt"
            ) from None
        # A usage error: its `error:` line went to the job's output (forwarded to the sweep's).
        failed = JobFailed(
            f"the job exited with status {stopped.code} (its error: line is in the sweep's output above)"
        )
        return failed_result(list(sweep_config.hydra.overrides.task), failed)
    finally:
        os.chdir(before[0])
        if before[1] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before[1]
        torch.set_num_threads(before[2])
