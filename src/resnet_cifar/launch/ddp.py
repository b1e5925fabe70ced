"""DDP under Hydra: child processes join this run instead of starting a new run or sweep.

Lightning's subprocess launcher starts DDP's other processes by re-running the command line
with ``hydra.run.dir`` set to the *run* directory pattern. Under ``--multirun`` that restarts
the whole sweep in every child, and outside of it a new timestamp can give the children a
directory of their own. The children must instead compose exactly this job's config (its own
overrides, no sweep) in this job's output directory.
"""

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

import torch.distributed
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.strategies.launchers import subprocess_script


def child_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and working directory of DDP process ``local_rank`` of the current job."""
    hydra = HydraConfig.get()
    command = [sys.executable, "-m", "resnet_cifar.train", *hydra.overrides.task]
    command += [
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        # The job's config and log are the main process's to write.
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra.job.name}_rank{local_rank}",
    ]
    return command, hydra.runtime.cwd


# What Lightning's launcher writes into the main process's environment for its children.
LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def ddp_job() -> Iterator[None]:
    """Run one Hydra job that may use DDP, and leave no trace of it for the next job.

    Inside, Lightning starts DDP children with :func:`child_command`. After, the process group is
    gone and the launcher's environment variables are as before: otherwise the next job of a
    multirun would take LOCAL_RANK as a sign that processes exist already and wait for them.
    """
    saved = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}
    subprocess_script._hydra_subprocess_cmd = child_command
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
