"""What produced a run's figures: software versions, device, precision and the code's commit.

``run_environment`` is recorded in metrics.json under ``environment``; its short form (device,
precision, torch version, commit) goes to every tracker beside the hyper-parameters, so that
runs on different machines or code can be told apart where they are compared.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L
    import torch

PACKAGE_DIR = Path(__file__).resolve().parent
GIT_TIMEOUT_S = 10
# The short form's keys, as TensorBoard's HPARAMS, MLflow's parameters and W&B's config show them.
SHORT_FORM_KEYS = ("environment.device", "environment.precision", "environment.torch", "environment.commit")


def git(*args: str) -> str | None:
    """``git <args>`` in the package's folder; its output, or None where git or a checkout is missing."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            # A status must not take the index lock that a commit in the same checkout may hold.
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def code_commit() -> tuple[str | None, bool | None]:
    """The commit of the git checkout that holds this package, and whether its tracked files were
    modified; (None, None) for an installed copy. A checkout that merely contains an installed
    copy (a virtual environment inside another repository) does not count: the package's own
    files must be tracked in it."""
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


@functools.cache
def running_code() -> tuple[str | None, bool | None]:
    """:func:`code_commit` as it was when this process first asked (the commands ask when they
    start): a process runs the code it imported, also where the checkout changes while it runs,
    as under a sweep's later jobs."""
    return code_commit()


def cpu_model() -> str:
    """The processor's model name (``AMD EPYC 7B13``), or its architecture where it is not known."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cudnn_version() -> str | None:
    """The version (``9.10.2``) of the cuDNN that torch loads, from torch's number (91002; 8902 for
    8.9.2); None where torch has none."""
    import torch

    number = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if not number:
        return None
    major, rest = (number // 10000, number % 10000) if number >= 90000 else (number // 1000, number % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def device_libraries(device: torch.device) -> tuple[str | None, str | None]:
    """The CUDA and cuDNN versions that computed on ``device``: torch's CUDA runtime and the cuDNN it
    loaded (None where cuDNN is turned off) on a CUDA device; (None, None) on the CPU or MPS, where
    neither ran, even though a CUDA build of torch has both at hand on any machine."""
    import torch

    if device.type != "cuda":
        return None, None
    return torch.version.cuda, cudnn_version() if torch.backends.cudnn.enabled else None


def device_name(trainer: L.Trainer) -> str:
    """The model of the device that the trainer runs on: the GPU's name, else the CPU's."""
    import torch

    device = trainer.strategy.root_device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({cpu_model()})"
    return cpu_model()


def run_environment(trainer: L.Trainer) -> dict[str, Any]:
    """The full record of metrics.json: the software, the CUDA and cuDNN that ran on the device
    (None on the CPU) beside the CUDA version torch was built with, the device (the model, and the
    number of devices the run used: its processes over all nodes), the precision the trainer uses,
    and the code's version and commit."""
    import hydra
    import lightning
    import torch

    import resnet_cifar

    commit, modified = running_code()
    device = trainer.strategy.root_device
    cuda, cudnn = device_libraries(device)
    return {
        "resnet_cifar": resnet_cifar.__version__,
        "commit": commit,
        "tree_modified": modified,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_built_with_cuda": torch.version.cuda,
        "lightning": lightning.__version__,
        "hydra": hydra.__version__,
        "cuda": cuda,
        "cudnn": cudnn,
        "device": device_name(trainer),
        "device_type": device.type,
        "devices": trainer.world_size,
        "precision": str(trainer.precision),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def commit_label(environment: dict[str, Any]) -> str:
    """The short commit (``4612349``), ``-modified`` where tracked files differed from it, or
    ``unknown`` outside a git checkout."""
    commit = environment.get("commit")
    if not commit:
        return "unknown"
    return str(commit)[:7] + ("-modified" if environment.get("tree_modified") else "")


def device_label(environment: dict[str, Any]) -> str:
    """``NVIDIA H100 80GB HBM3``, or ``4 x NVIDIA H100 80GB HBM3`` for a run over 4 devices."""
    count = environment.get("devices") or 1
    name = str(environment.get("device"))
    return name if count == 1 else f"{count} x {name}"


def short_form(environment: dict[str, Any]) -> dict[str, str]:
    """The trackers' columns: device, precision, torch version and commit."""
    values = (
        device_label(environment),
        str(environment.get("precision")),
        str(environment.get("torch")),
        commit_label(environment),
    )
    return dict(zip(SHORT_FORM_KEYS, values))
