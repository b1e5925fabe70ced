"""Whether the accelerator a config asks for is on this machine, asked before any work.

Lightning answers ``trainer.accelerator=gpu`` on a machine without one with "No supported gpu
backend found!", which names neither the setting nor the way out.
"""

import torch
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

from resnet_cifar.errors import ConfigError

# Lightning's accelerator names for a GPU, and the backends that can serve each.
GPU_BACKENDS = {"gpu": (CUDAAccelerator, MPSAccelerator), "cuda": (CUDAAccelerator,), "mps": (MPSAccelerator,)}


def check_accelerator_available(accelerator: object) -> None:
    """Refuse ``trainer.accelerator`` naming a GPU where torch can use none, saying why and how to
    train here instead."""
    name = str(accelerator).lower()
    backends = GPU_BACKENDS.get(name)
    if backends is None or any(backend.is_available() for backend in backends):
        return
    if name == "mps":
        why = "torch.backends.mps.is_available() is False"
    elif torch.version.cuda is None:
        why = f"torch {torch.__version__} was built without CUDA"
    else:
        why = f"torch.cuda.is_available() is False with torch {torch.__version__}"
    asked = f"trainer.accelerator={accelerator}" + (" (trainer=gpu)" if name == "gpu" else "")
    raise ConfigError(
        f"{asked} asks for a GPU, and this machine has none that torch can use ({why}); run on the CPU "
        "with trainer=cpu, or use the default trainer (trainer.accelerator=auto), which takes a GPU where "
        "there is one and the CPU otherwise"
    )
