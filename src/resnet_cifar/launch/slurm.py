"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, made to talk.

What it adds to submitit's launcher:

- GPUs are requested only for GPU jobs (``${job_gpus:${trainer.accelerator},${trainer.devices}}``
  in conf/hydra/launcher/slurm.yaml): a CPU job on a cluster without GPUs is not refused.
- A submission SLURM refuses ends with one ``error:`` line: SLURM's message and the config key to
  change, exit status 2, no traceback.
- While jobs wait, every ``progress_every_s`` seconds one line: how many are pending, running and
  done, and why SLURM keeps the pending ones waiting, with the key to change where the reason
  is the job's own request (say ``PartitionConfig`` for more CPUs than a node has).
- It waits with ``squeue`` (clusters without accounting have no ``sacct``, which submitit's own
  waiting needs), and a job that fails or dies, on any of its tasks, is reported failed while the
  others run on: the sweep ends with Hydra's report of the failed jobs once all have ended.

The plugin that Hydra finds, hydra_plugins.resnet_cifar.slurm_launcher, imports this module only
when a sweep uses it; submitit sends the :class:`SlurmLauncher` built there to each job.
"""

import json
import logging
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import OmegaConf

from resnet_cifar.launch.cluster_jobs import failed_job_return, job_error, progress_line, refuse

log = logging.getLogger(__name__)
# SLURM job states after which a job runs no more (squeue --states=all).
ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}
GPU_KEYS = (
    "hydra.launcher.gpus_per_node "
    "(it follows trainer.accelerator and trainer.devices: trainer.accelerator=cpu asks for none)"
)
REQUEST_KEYS = f"hydra.launcher.cpus_per_task, hydra.launcher.mem_gb, {GPU_KEYS}, or the nodes (trainer.num_nodes)"
# Parts of sbatch's refusals -> the config key to change.
REFUSALS = {
    "generic resource": GPU_KEYS,
    "gres": GPU_KEYS,
    "partition": "hydra.launcher.partition",
    "account": "hydra.launcher.account",
    "qos": "hydra.launcher.qos",
    "time limit": "hydra.launcher.timeout_min",
    "memory": "hydra.launcher.mem_gb",
    "node count": "trainer.num_nodes (hydra.launcher.nodes follows it)",
    "node configuration is not available": REQUEST_KEYS,
    "constraint": "hydra.launcher.constraint",
}
# SLURM's reasons for keeping a job pending that lie in the job's own request.
PENDING_REASONS = {
    "PartitionConfig": "it asks for more than the partition's nodes have",
    "PartitionTimeLimit": "its time limit is over the partition's: lower hydra.launcher.timeout_min",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows: lower trainer.num_nodes",
    "ReqNodeNotAvail": "the nodes it can run on are unavailable (down or reserved)",
    "BeginTime": "it was requeued and waits for its begin time",
}


def refusal_message(slurm_error: str) -> str:
    """The ``error:`` line for an sbatch refusal: SLURM's own words and the key to change."""
    lines = [line.strip() for line in slurm_error.splitlines() if line.strip()]
    said = "; ".join(line.split("error:", 1)[1].strip() for line in lines if "error:" in line) or " ".join(lines)
    keys = [key for part, key in REFUSALS.items() if part in said.lower()]
    fix = keys[0] if keys else f"the job's request: hydra.launcher.partition, {REQUEST_KEYS}"
    return f"SLURM refused the jobs: {said}. Change {fix}"


def cpus_per_node(partition: str | None) -> int | None:
    """The most CPUs a node of ``partition`` (the default partition if None) has, per sinfo."""
    command = ["sinfo", "--noheader", "--format=%c"] + ([f"--partition={partition}"] if partition else [])
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
        return max(int(value.rstrip("+")) for value in output.split())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


class SlurmLauncher(SubmititSlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher with clear refusals, progress while waiting, and
    failed jobs reported without stopping the others. ``progress_every_s``: seconds between the
    progress lines; ``poll_s``: seconds between looks at the queue; ``end_grace_s``: how long a job
    must stay ended without a result before it counts as failed (a requeue passes through ended states)."""

    def __init__(self, progress_every_s: float = 60, poll_s: float = 5, end_grace_s: float = 30, **params: Any) -> None:
        super().__init__(**params)
        self.progress_every_s = progress_every_s
        self.poll_s = poll_s
        self.end_grace_s = end_grace_s

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        # Jobs whose SLURM request differs (a sweep over trainer.devices, say) go in arrays of their own.
        arrays: dict[str, list[int]] = {}
        job_params = []
        for index, overrides in enumerate(job_overrides):
            log.info(f"\t#{initial_job_idx + index} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    initial_job_idx + index,
                    f"job_id_for_{initial_job_idx + index}",
                    Singleton.get_state(),
                )
            )
            arrays.setdefault(json.dumps(self._request(list(overrides)), sort_keys=True), []).append(index)
        jobs: list[Any] = [None] * len(job_overrides)
        try:
            for request, indices in arrays.items():
                submitted = self._executor(json.loads(request)).map_array(self, *zip(*(job_params[i] for i in indices)))
                for index, job in zip(indices, submitted):
                    jobs[index] = job
        except submitit.core.utils.FailedJobError as refused:
            refuse(refusal_message(str(refused)))
        return self._wait_for(jobs, [list(o) for o in job_overrides])

    def _request(self, overrides: list[str]) -> dict[str, Any]:
        """This launcher's parameters as one job's config resolves them (nodes, tasks and GPUs follow its trainer)."""
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        params = OmegaConf.to_container(config.hydra.launcher, resolve=True)
        return {key: value for key, value in params.items() if key in self.params}

    def _executor(self, params: dict[str, Any]) -> Any:
        """submitit's executor for ``params``, as hydra-submitit-launcher makes it."""
        import submitit

        params = dict(params)
        executor = submitit.AutoExecutor(
            cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=params.pop("max_num_timeout")
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{key if key in base else f"slurm_{key}": value for key, value in params.items()})
        return executor

    def _wait_for(self, jobs: list[Any], overrides: list[list[str]]) -> list[JobReturn]:
        """Wait until every job ended, saying how they are doing; their results in order."""
        results: dict[int, JobReturn] = {}
        # When each job was first seen ended without a result file. A requeued job passes through
        # ended states (PREEMPTED, or FAILED while submitit requeues it) before it is PENDING again,
        # and the result file may lag on a shared file system: only an end that lasts counts.
        ended_since: dict[int, float] = {}
        last_progress = time.monotonic()
        while len(results) < len(jobs):
            time.sleep(self.poll_s)
            states = queue_states([job.job_id for job in jobs])
            now = time.monotonic()
            for index, job in enumerate(jobs):
                if index in results:
                    continue
                state, _ = states.get(job.job_id, ("GONE", ""))
                if job.task(0).paths.result_pickle.exists() and state not in ("PENDING", "RUNNING"):
                    results[index] = job_return(job, overrides[index])
                elif state in ENDED or state == "GONE":
                    ended_since.setdefault(index, now)
                    if now - ended_since[index] >= self.end_grace_s:
                        results[index] = failed_return(job, overrides[index], state)
                else:
                    ended_since.pop(index, None)
            if now - last_progress >= self.progress_every_s and len(results) < len(jobs):
                log.info(self._progress(jobs, states, len(results)))
                last_progress = now
        return [results[index] for index in range(len(jobs))]

    def _progress(self, jobs: list[Any], states: dict[str, tuple[str, str]], done: int) -> str:
        pending = Counter(states[job.job_id][1] for job in jobs if states.get(job.job_id, ("",))[0] == "PENDING")
        running = sum(states.get(job.job_id, ("",))[0] in ("RUNNING", "COMPLETING") for job in jobs)
        line = progress_line("SLURM", sum(pending.values()), running, done, len(jobs))
        if pending:
            line += "; pending: " + ", ".join(f"{count} {self._explain(reason)}" for reason, count in pending.items())
        return line

    def _explain(self, reason: str) -> str:
        """SLURM's reason, with what it means and the key to change where the job's request is the cause."""
        if reason not in PENDING_REASONS:
            return reason
        if reason == "PartitionConfig":
            asked, tasks = self.params.get("cpus_per_task") or 1, self.params.get("tasks_per_node") or 1
            has = cpus_per_node(self.params.get("partition"))
            if has is not None and asked * tasks > has:
                return (
                    f"PartitionConfig ({asked} CPUs per task x {tasks} tasks per node, but the partition's "
                    f"nodes have {has} CPUs: lower hydra.launcher.cpus_per_task)"
                )
            return f"PartitionConfig ({PENDING_REASONS[reason]}: lower {REQUEST_KEYS})"
        return f"{reason} ({PENDING_REASONS[reason]})"


def queue_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """SLURM's state and reason of each job (array tasks one by one); jobs SLURM has forgotten are absent."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["squeue", "--noheader", "--states=all", "--array", f"--jobs={','.join(arrays)}", "--format=%i|%T|%r"]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("squeue failed (%s); trying again", error)
        return {job_id: ("UNKNOWN", "") for job_id in job_ids}
    states = {}
    for line in output.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        states[job_id.strip()] = (state.strip(), reason.strip())
    return states


def job_return(job: Any, overrides: list[str]) -> JobReturn:
    """The JobReturn a finished job sent back (a failed training run is one with status FAILED),
    under DDP its task 0's (global rank 0); a failure says what srun saw of the other tasks."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        result = job.task(0).result()
    except (FailedJobError, UncompletedJobError) as failed:  # its function raised (submitit's trace), or no result
        error = str(failed)
    else:
        if result.status != JobStatus.FAILED:
            return result
        error = job_error(result)
    return failed_job_return(overrides, f"SLURM job {job.job_id} failed: {error}{srun_report(job)}")


def failed_return(job: Any, overrides: list[str], state: str) -> JobReturn:
    return failed_job_return(
        overrides,
        f"SLURM job {job.job_id} ended ({state}) without a result: killed, out of memory or out of time"
        f"{srun_report(job)}",
    )


def srun_report(job: Any) -> str:
    """What srun said of the job's tasks (``task 1: Killed``) and where the job's log is."""
    try:
        said = [
            line.strip() for line in Path(job.paths.stderr).read_text().splitlines() if line.startswith("srun: error:")
        ]
    except OSError:
        said = []
    return "".join(f"; {line}" for line in said) + f" (log: {job.paths.stderr})"
