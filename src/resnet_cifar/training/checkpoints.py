"""Reading checkpoints safely: no code from the file runs, and it must fit the configuration."""

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from resnet_cifar.errors import CheckpointError, unpickler_reason
from resnet_cifar.files import atomic_write

MODEL_KEYS = ("depth", "shortcut", "residual", "num_classes")


# What torch's weights-only unpickler says when it meets a Python object it will not build.
OBJECT_REFUSED = re.compile(r"GLOBAL|unrecognized function|Can only create new object|must be imported")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True`` (tensors and plain containers)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a run's checkpoints/last.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = unpickler_reason(error)
        if not OBJECT_REFUSED.search(reason):  # e.g. "Unsupported operand 157": random bytes
            raise CheckpointError(
                f"checkpoint {path} cannot be read ({reason}); it is truncated or not a PyTorch "
                "checkpoint: use another checkpoint of the run"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds Python objects other than tensors and plain "
            f"containers, which could run code when loaded ({reason}); "
            "only use checkpoints written by resnet-cifar from a source you trust"
        ) from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); "
            "it is truncated or not a PyTorch checkpoint: use another checkpoint of the run"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint (it has no state_dict)")
    return checkpoint


def checkpoint_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The composed run config that a resnet-cifar checkpoint carries."""
    config = checkpoint.get("hyper_parameters", {}).get("run_config")
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"checkpoint {path} was not written by resnet-cifar's train (it has no run config)")
    if "module" not in config:  # its steps were counted by a manual loop that resumes at step 0 now
        raise CheckpointError(
            f"checkpoint {path} was written by a resnet-cifar older than its module/ configs and cannot be "
            "resumed or evaluated by this version; train again, or use the version that wrote it"
        )
    return config


def check_same_model(checkpoint: dict[str, Any], path: str | Path, model_config: dict[str, Any]) -> None:
    """Refuse a checkpoint of another depth, shortcut or variant than ``model_config``."""
    saved = checkpoint_config(checkpoint, path)["model"]
    differences = [key for key in MODEL_KEYS if saved.get(key) != model_config.get(key)]
    if differences:
        describe = lambda model: ", ".join(f"{key}={model.get(key)}" for key in MODEL_KEYS)  # noqa: E731
        raise CheckpointError(
            f"checkpoint {path} holds model ({describe(saved)}) but this run is configured for "
            f"model ({describe(model_config)}); resume with the checkpoint's settings or start a new run"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target, then renamed over it.

    A process killed during the write (or a full disk) leaves the previous checkpoint whole.
    Lightning's own writer stages the file in the system's temporary folder, which is often on
    another file system, where the final move is a copy that can be cut short.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as temporary:
            torch.save(checkpoint, temporary)
