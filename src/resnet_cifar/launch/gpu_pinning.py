"""Round-robin GPU pinning for jobs that share one machine (``hydra/launcher=parallel``).

A Hydra callback: before each job starts it sets ``CUDA_VISIBLE_DEVICES`` to one of the GPUs
this machine shows (or that the user's own ``CUDA_VISIBLE_DEVICES`` lists), chosen by the job's
number, so jobs 0, 1, 2, ... land on GPUs 0, 1, 2, ..., N-1, 0, 1, ... A job then sees one GPU
(``trainer=gpu`` uses it). Several jobs may share a GPU: ``n_jobs`` larger than the GPU count.

A worker process of the launcher runs several jobs one after another. CUDA fixes the visible
devices when it first starts in a process, so a worker that already used CUDA keeps its GPU for
later jobs; jobs stay spread over the GPUs because every worker holds one. Without GPUs, or with
``hydra.callbacks.pin_gpus.enabled=false``, nothing changes.
"""

import logging
import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)
ALL_GPUS_VARIABLE = "RESNET_CIFAR_ALL_GPUS"  # the GPUs before pinning, kept for the worker's next job


def visible_gpus() -> list[str]:
    """The GPUs to share out: the user's CUDA_VISIBLE_DEVICES, else every GPU the driver shows."""
    listed = os.environ.get(ALL_GPUS_VARIABLE, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]  # NVML: CUDA stays uninitialised


def gpu_for_job(job_num: int, gpus: list[str]) -> str:
    return gpus[job_num % len(gpus)]


class PinGpuRoundRobin(Callback):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        import torch

        gpus = visible_gpus()
        if not gpus:
            return
        os.environ.setdefault(ALL_GPUS_VARIABLE, ",".join(gpus))
        if torch.cuda.is_initialized():
            log.info("this worker already uses GPU %s; the job runs there", os.environ.get("CUDA_VISIBLE_DEVICES"))
            return
        gpu = gpu_for_job(int(config.hydra.job.num), gpus)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        log.info("job %s pinned to GPU %s", config.hydra.job.num, gpu)
