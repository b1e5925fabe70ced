"""What one job of a ``hydra/launcher=ray_cluster`` sweep runs in its Ray task, on whichever node
Ray chose: the job as Hydra's launchers run one, in the sweep's working directory, with the
threads its CPUs allow. A job stopped by SIGTERM raises :class:`JobPreempted`, which Ray retries
(``retry_exceptions``), and the retry resumes from the checkpoint the job saved."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import ray
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from resnet_cifar.launch.cluster_jobs import JobFailed, failed_result
from resnet_cifar.launch.preemption import STOP_SIGNALS

PREEMPTED_EXIT_CODES = {128 + signum: signal.Signals(signum).name for signum in STOP_SIGNALS}


class JobPreempted(RuntimeError):
    """The job was stopped by SIGTERM (or SLURM's requeue signal) and saved its checkpoint;
    Ray retries it (``retry_exceptions``), and the retry resumes from that checkpoint."""


class SweepDirectoryMissing(RuntimeError):
    """The sweep's working directory is not on this node: it is not on shared storage."""


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
