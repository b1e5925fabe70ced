"""DDP under Hydra: child processes join this run instead of starting a new run or sweep.

Lightning's subprocess launcher starts DDP's other processes by re-running the command line
with ``hydra.run.dir`` set to the *run* directory pattern. Under ``--multirun`` that restarts
the whole sweep in every child, and outside of it a new timestamp can give the children a
directory of their own. The children must instead compose exactly this job's config (its own
overrides, no sweep) in this job's output directory.
"""

import sys
from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig
from lightning.fabric.strategies.launchers import subprocess_script


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


def launch_ddp_children_in_this_run() -> None:
    """Make Lightning start DDP child processes with :func:`child_command`."""
    subprocess_script._hydra_subprocess_cmd = child_command
