"""``hydra/launcher=ray_cluster``: Hydra's Ray launcher (hydra-ray-launcher), made to report and to resume.

Each job of a sweep runs as one Ray task (:mod:`.ray_task`), in a Ray worker process, on whichever
node has the resources it asks for; a DDP job's task starts the job's processes on that node
itself (:mod:`resnet_cifar.launch.ddp`). What it adds to the plugin's launcher, whose ``launch``
ends in ``[ray.get(run) for run in runs]``:

- Resources follow the trainer (conf/hydra/launcher/ray_cluster.yaml): ``num_gpus`` is
  ``trainer.devices`` for GPU jobs and none for CPU jobs, per job, so a sweep over
  ``trainer.devices`` asks for what each job needs; the job's CPUs are shared among its processes
  (``OMP_NUM_THREADS``).
- A job that asks for more than any node of the cluster has ends the sweep before any job starts,
  with one ``error:`` line naming the request and the cluster's largest node (:mod:`.ray_resources`).
- While jobs wait, every ``progress_every_s`` seconds one line: how many are pending, running
  and done (Ray's state API, :mod:`.ray_cluster`).
- A job that fails (an exception, a process killed, a DDP rank dying, a NaN) is reported failed
  while the others run on: the sweep ends with Hydra's report of the failed jobs once all ended.
- A job whose node is lost, or whose task process dies, is retried by Ray (``max_retries``) and
  resumes from its checkpoints/last.ckpt. A job stopped by SIGTERM saves at its current step
  (:mod:`resnet_cifar.launch.preemption`) and is retried the same way.
- Jobs run in the sweep's working directory (relative paths such as ``hydra.sweep.dir`` or
  ``data.root`` mean the same on every node); it must be on storage that every node shares.

The plugin that Hydra finds, hydra_plugins.resnet_cifar.ray_cluster_launcher, imports this module
only when a sweep uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from resnet_cifar.errors import UsageError
from resnet_cifar.launch.cluster_jobs import failed_job_return, job_error, refuse

try:
    import ray
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as PluginRayLauncher
except ModuleNotFoundError as missing:  # the ray extra is not installed
    if (missing.name or "").split(".")[0] != "ray" and "hydra_ray_launcher" not in (missing.name or ""):
        raise
    raise UsageError("hydra/launcher=ray_cluster needs Ray and hydra-ray-launcher: pip install -e '.[ray]'") from None

from resnet_cifar.launch.ray_cluster import connect, progress
from resnet_cifar.launch.ray_resources import refuse_unplaceable
from resnet_cifar.launch.ray_task import JobPreempted, run_job_in_task

log = logging.getLogger(__name__)


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
            refuse_unplaceable([(job.name, job.options) for job in jobs], ray.nodes())
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
                f"job #{index} asks for trainer.num_nodes={config.trainer.num_nodes}, but hydra/launcher=ray_cluster "
                "runs each job on one node (a DDP job's processes all on it): use trainer.num_nodes=1 with "
                "trainer.devices up to a node's GPUs, or hydra/launcher=slurm for jobs across nodes"
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
        index_of = {ref: index for index, ref in enumerate(refs)}
        results: dict[int, JobReturn] = {}
        waiting = list(refs)
        last_progress = time.monotonic()
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=self.poll_s)
            for ref in done:
                results[index_of[ref]] = job_result(ref, jobs[index_of[ref]])
            if waiting and time.monotonic() - last_progress >= self.progress_every_s:
                options = [jobs[index_of[ref]].options for ref in waiting]
                log.info(progress(waiting, options, len(results), len(jobs)))
                last_progress = time.monotonic()
        return [results[index] for index in range(len(jobs))]


def name_jobs(jobs: list[RayJob]) -> None:
    """Name each job by its number and the overrides that tell it from the others, as its
    directory is named in a study: ``#3 (model.depth=20 seed=1)``."""
    shared = set.intersection(*(set(job.overrides) for job in jobs))
    for job in jobs:
        own = [override for override in filter_overrides(job.overrides) if override not in shared]
        job.name = f"#{job.index} ({' '.join(own)})" if own else f"#{job.index}"


def job_result(ref: Any, job: RayJob) -> JobReturn:
    """The JobReturn a job sent back; a failure, of the job or of its task, reported as this job's."""
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
