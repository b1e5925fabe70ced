"""Runs started by an external launcher: srun (in an sbatch script or an salloc allocation) and
torchrun. Each process they start composes the config itself.

The run directory. The default ``hydra.run.dir`` (conf/train.yaml) ends in
``${launched_run_name:<date_time>}``, the same on every process of a job and again in the job
requeued:

- a process SLURM started (the batch script's own, or a task of srun): ``slurm-<job id>.<step id>``
  for srun's tasks, ``slurm-<job id>`` for the batch script's processes. A requeued job keeps its
  id and numbers its steps from 0 again, so it finds the directory of its first attempt;
- a process torchrun started: ``torchrun-<rendezvous id>`` (``torchrun --rdzv-id``; a single-node
  torchrun without one draws a random id that its processes share). Without an id (torchrun's
  ``none``), each process would name its own directory after the second it started in: refused
  with one ``error:`` line before any directory is made;
- anything else: the date and time.

The cluster environment. Lightning does not see SLURM in a job named ``interactive`` or ``bash``
(salloc names its jobs ``interactive``) and would start ``trainer.devices`` processes in every
task of ``srun -n 2``; where it does see SLURM, it requeues the job on USR1 its own way.
:func:`slurm_tasks_environment` gives the tasks of an srun step with several tasks, and every
process in which Lightning sees SLURM, SLURM's environment without Lightning's requeueing,
checked against the job's tasks (:class:`SlurmTasks`).
"""

import os
import re

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from omegaconf import OmegaConf

from resnet_cifar.cli import exit_with_usage_error
from resnet_cifar.errors import ConfigError
from resnet_cifar.training.lightning_compat import SLURMEnvironmentForAnyTasks

# What torchrun sets TORCHELASTIC_RUN_ID to when it was given no --rdzv-id.
NO_RENDEZVOUS_ID = "none"


def slurm_job_id() -> str | None:
    """The SLURM job of this process if SLURM started it: the batch script's or srun's (not
    salloc's own shell, which SLURM did not start: it has no SLURM_PROCID)."""
    if "SLURM_PROCID" not in os.environ:
        return None
    return os.environ.get("SLURM_JOB_ID")


def launched_run_name(default: str) -> str:
    """The run directory's name that every process of this job composes alike (see above);
    ``default`` where one process composes it alone."""
    environ = os.environ
    job = slurm_job_id()
    if job is not None:
        step = environ.get("SLURM_STEP_ID")
        return f"slurm-{job}" + ("" if step is None else f".{step}")
    if TorchElasticEnvironment.detect():
        run_id = environ.get("TORCHELASTIC_RUN_ID", NO_RENDEZVOUS_ID)
        if run_id == NO_RENDEZVOUS_ID:
            # Raised from inside Hydra's resolution of hydra.run.dir, which would wrap an exception.
            exit_with_usage_error(
                ConfigError(
                    "torchrun starts processes that each name the run directory after their own start time, so they "
                    "may write to different directories: give hydra.run.dir=... (the same on every node) or torchrun "
                    "--rdzv-id=<id> (the run directory is then outputs/runs/torchrun-<id>)"
                )
            )
        return f"torchrun-{run_id}"
    return default


def register_resolvers() -> None:
    """``${launched_run_name:<default>}`` for conf/train.yaml's ``hydra.run.dir``."""
    OmegaConf.register_new_resolver("launched_run_name", launched_run_name, replace=True)


def tasks_per_node() -> list[int]:
    """The number of tasks on each node of this srun step (SLURM_STEP_TASKS_PER_NODE), or of this
    job outside srun (SLURM_TASKS_PER_NODE): ``2``, ``2(x3)``, ``3,1``, ``2(x2),1``."""
    counts: list[int] = []
    environ = os.environ
    for part in environ.get("SLURM_STEP_TASKS_PER_NODE", environ.get("SLURM_TASKS_PER_NODE", "1")).split(","):
        count, _, repeat = re.fullmatch(r"(\d+)(\(x(\d+)\))?", part).groups()
        counts += [int(count)] * int(repeat or 1)
    return counts


class SlurmTasks(SLURMEnvironmentForAnyTasks):
    """SLURM's cluster environment: one DDP process per task that SLURM started.

    Lightning's own requeueing on USR1 is off (``auto_requeue=False``): the preemption callback
    saves at a step all processes agree on and requeues the job itself
    (:mod:`resnet_cifar.launch.preemption`).
    """

    def __init__(self) -> None:
        super().__init__(auto_requeue=False)

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Refuse a trainer whose processes per node and nodes are not the step's tasks per node and nodes."""
        per_node = tasks_per_node()
        if len(set(per_node)) > 1:
            raise ConfigError(
                f"SLURM started {'+'.join(map(str, per_node))} tasks on the {len(per_node)} nodes; DDP needs "
                "the same number on each: ask for them with --ntasks-per-node=N"
            )
        if (per_node[0], len(per_node)) != (num_devices, num_nodes):
            raise ConfigError(
                f"SLURM started {per_node[0]} task(s) per node on {len(per_node)} node(s), but the trainer asks for "
                f"trainer.devices={num_devices} per node on trainer.num_nodes={num_nodes}: one task per device, so "
                f"set trainer.devices={per_node[0]} trainer.num_nodes={len(per_node)}, or ask SLURM for "
                f"{num_devices} task(s) per node (--ntasks-per-node) on {num_nodes} node(s)"
            )


def slurm_tasks_environment() -> SlurmTasks | None:
    """:class:`SlurmTasks` for a process that srun started as one of several tasks of a step, or
    in which Lightning sees SLURM; None elsewhere (the trainer config's plugin entry is then left
    out and Lightning chooses). Under torchrun, also inside srun, torchrun's processes are the DDP
    processes, as in Lightning."""
    if TorchElasticEnvironment.detect():
        return None
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1 or SLURMEnvironment.detect():
        return SlurmTasks()
    return None
