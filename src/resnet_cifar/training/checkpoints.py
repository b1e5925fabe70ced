"""Reading checkpoints safely: no code from the file runs, and it must fit the configuration."""

import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from resnet_cifar.errors import CheckpointError, unpickler_reason
from resnet_cifar.files import atomic_write
from resnet_cifar.trusted_targets import TrustedTargets, check_file_config

MODEL_KEYS = ("depth", "shortcut", "residual", "num_classes")


# What torch's weights-only unpickler says when it meets a Python object it will not build.
OBJECT_REFUSED = re.compile(r"GLOBAL|unrecognized function|Can only create new object|must be imported")


def missing_checkpoint(path: str | Path) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} does not exist; pass the path of a run's checkpoints/last.ckpt")


def read_checkpoint(path: str | Path, contents: IO[bytes] | None = None) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True`` (tensors and plain containers), from
    ``path``, or from ``contents`` read from there."""
    path = Path(path) if contents is None else path
    if contents is None and not path.is_file():
        raise missing_checkpoint(path)
    try:
        checkpoint = torch.load(path if contents is None else contents, map_location="cpu", weights_only=True)
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


def checkpoint_contents(path: str | Path | IO[bytes]) -> bytes:
    """The bytes of a checkpoint: a local path, a URL that fsspec opens (``s3://...``), or a file
    object. Read once, so that what is checked is what is loaded."""
    if hasattr(path, "read"):
        return path.read()
    if "://" in str(path):
        import fsspec

        with fsspec.open(str(path), "rb") as file:
            return file.read()
    if not Path(path).is_file():
        raise missing_checkpoint(path)
    return Path(path).read_bytes()


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


def check_checkpoint_targets(
    checkpoint: dict[str, Any], path: str | Path, trusted: TrustedTargets, given: Iterable[str] = ()
) -> None:
    """Refuse a checkpoint whose configs (its run config, the module's and the data module's
    hyper-parameters) name a target that ``trusted`` does not allow or hold an interpolation,
    before anything is built from them. Hyper-parameters named in ``given`` are replaced by the
    caller's or not built, and are not read."""
    source = f"checkpoint {path}"
    hparams = checkpoint.get("hyper_parameters") or {}
    if not isinstance(hparams, dict):
        hparams = {"": hparams}
    # The run config first, by the keys a user knows (model._target_, trainer.plugins[0]._target_).
    if "run_config" not in given:
        check_file_config(hparams.get("run_config"), source, trusted)
    for name, value in hparams.items():
        if name != "run_config" and name not in given:
            check_file_config(value, source, trusted, key=f"hyper_parameters.{name}".rstrip("."))
    check_file_config(checkpoint.get("datamodule_hyper_parameters"), source, trusted, "datamodule_hyper_parameters")


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
