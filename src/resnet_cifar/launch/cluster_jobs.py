"""What the cluster launchers (``hydra/launcher=slurm``, ``hydra/launcher=ray``) share: the GPUs a
job's trainer asks for, a refused sweep as one ``error:`` line, failed jobs reported alone, and
the progress line while jobs wait."""

import logging
import sys
from typing import Any, NoReturn

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from resnet_cifar.cli import USAGE_ERROR_EXIT_CODE
from resnet_cifar.launch.hydra_compat import failed_job_error

log = logging.getLogger(__name__)
GPU_ACCELERATORS = ("gpu", "cuda", "auto")


def job_gpus(accelerator: str, devices: Any) -> int | None:
    """GPUs a job asks its cluster for, per node: the trainer's devices for a GPU job (``auto``
    counts as one: a job is placed before it can look), none for a CPU job."""
    if str(accelerator) not in GPU_ACCELERATORS or not isinstance(devices, int) or devices < 1:
        return None
    return devices


def register_resolvers() -> None:
    """``${job_gpus:${trainer.accelerator},${trainer.devices}}`` for conf/hydra/launcher/."""
    OmegaConf.register_new_resolver("job_gpus", job_gpus, replace=True)


def refuse(message: str) -> NoReturn:
    """End the sweep before any job ran: ``error: <message>`` on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(USAGE_ERROR_EXIT_CODE)


class JobFailed(RuntimeError):
    """A job of the sweep failed on the cluster."""


def failed_result(overrides: list[str], error: BaseException) -> JobReturn:
    """A failed job's result, as Hydra's ``run_job`` makes one: status FAILED, the error as its value."""
    result = JobReturn(overrides=overrides, status=JobStatus.FAILED)
    result.return_value = error
    return result


def failed_job_return(overrides: list[str], message: str) -> JobReturn:
    """A failed job's result, logged when it is known: Hydra's report at the sweep's end names
    only the first failed job."""
    failed = failed_result(overrides, JobFailed(message))
    log.error(message)
    return failed


def job_error(result: JobReturn) -> str:
    """What a failed job's result says: ``ValueError: ...``."""
    error = failed_job_error(result)
    return f"{type(error).__name__}: {error}"


def progress_line(cluster: str, pending: int, running: int, done: int, total: int) -> str:
    return f"{cluster} jobs of this sweep: {pending} pending, {running} running, {done} done of {total}"
