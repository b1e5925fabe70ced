"""One reader for trained networks: a Lightning checkpoint or an exported folder, read as data.

Whoever opens a checkpoint (evaluate, ``ImageClassifier.load_from_checkpoint``, a resume, the
report, the export) reads it here, the same way. The file is loaded with ``weights_only=True``
(tensors and plain containers), and of its contents only these cross:

- the weights;
- the network's settings (``_target_`` and its arguments), built only where the network is allowed
  (:mod:`resnet_cifar.allowed_networks`) and its arguments fit its signature;
- the data settings it was trained with, as the data module's typed arguments;
- the module's other arguments, the optimizer and the scheduler as settings that the loader
  checks against the module's signature and maps to torch.optim (:mod:`.optim_settings`);
- the step it was saved at, and the training split's mean image.

Where Lightning would take a module's arguments from, and how they become typed settings, is
:mod:`.lightning_arguments`.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from resnet_cifar.errors import CheckpointError, unpickler_reason
from resnet_cifar.models.pretrained import PAPER_ARCHITECTURE, is_exported, read_exported
from resnet_cifar.training.lightning_arguments import lightning_arguments
from resnet_cifar.typed_settings import BadSetting, keyword_arguments, plain_value

# What torch's weights-only unpickler says when it meets a Python object it will not build.
OBJECT_REFUSED = re.compile(r"GLOBAL|unrecognized function|Can only create new object|must be imported")
NETWORK_PREFIX = "net."
DATAMODULE_ARGUMENTS = "datamodule_hyper_parameters"
DATAMODULE_STATE = "CIFARDataModule"


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
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
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


@dataclass
class Trained:
    """What crosses from a checkpoint or an exported network, as data (see the module's docstring)."""

    source: str  # "checkpoint PATH", "exported network DIR": how messages name the file
    state_dict: dict[str, torch.Tensor]  # the module's (the network's weights under "net.")
    network: dict[str, Any]  # _target_ and the network's arguments, not yet allowed
    data: dict[str, Any]  # the data module's arguments (plain values), possibly empty
    module: dict[str, Any]  # the module's other arguments (plain values, not yet checked)
    step: int | None = None
    mean_image: torch.Tensor | None = None

    @property
    def network_weights(self) -> dict[str, torch.Tensor]:
        return {
            key.removeprefix(NETWORK_PREFIX): value
            for key, value in self.state_dict.items()
            if key.startswith(NETWORK_PREFIX)
        }


def read_trained(path: str | Path | IO[bytes], hparams_file: str | Path | None = None, name: str = "") -> Trained:
    """The trained network at ``path``: a checkpoint, or a folder written by ``resnet-cifar-export``."""
    if not hasattr(path, "read") and is_exported(path):
        return trained_from_exported(path)
    if not hasattr(path, "read") and Path(path).is_dir():
        raise CheckpointError(
            f"{path} is a folder but not an exported network (it has no config.json); pass a checkpoint "
            "file or a folder written by resnet-cifar-export"
        )
    contents = checkpoint_contents(path)
    name = name or str(getattr(path, "name", path))
    return trained_from_checkpoint(read_checkpoint(name, io.BytesIO(contents)), name, hparams_file)


def trained_from_exported(folder: str | Path) -> Trained:
    exported = read_exported(folder)
    target = (
        "resnet_cifar.models.cifar_resnet" if exported.architecture == PAPER_ARCHITECTURE else exported.architecture
    )
    weights = {
        NETWORK_PREFIX + key.removeprefix("network."): value
        for key, value in exported.weights.items()
        if key != "mean_image"
    }
    return Trained(
        source=f"exported network {folder}",
        state_dict=weights,
        network={"_target_": target, **exported.settings},
        data=exported.data,
        module={},
        mean_image=exported.weights.get("mean_image"),
    )


def trained_from_checkpoint(checkpoint: dict[str, Any], path: str, hparams_file: str | Path | None = None) -> Trained:
    source = f"checkpoint {path}"
    arguments = lightning_arguments(checkpoint, hparams_file)
    run_config = arguments.get("run_config")  # the whole run config, which checkpoints carried before
    if isinstance(run_config, Mapping) and "module" not in run_config:
        # Its steps were counted by a manual loop that resumes at step 0 now.
        raise CheckpointError(
            f"{source} was written by a resnet-cifar older than its module/ configs and cannot be "
            "resumed or evaluated by this version; train again, or use the version that wrote it"
        )
    network = arguments.get("net")
    if not isinstance(network, Mapping):
        network = run_config.get("model") if isinstance(run_config, Mapping) else None
    if not isinstance(network, Mapping):
        raise CheckpointError(
            f"{source} records no network settings (net): it was not written by resnet-cifar's train; "
            "build the network yourself and load its state_dict"
        )
    data = checkpoint.get(DATAMODULE_ARGUMENTS)
    if not isinstance(data, Mapping) and isinstance(run_config, Mapping):
        data = run_config.get("data")
    state = checkpoint.get(DATAMODULE_STATE)
    mean_image = state.get("mean_image") if isinstance(state, Mapping) else None
    step = checkpoint.get("global_step")
    return Trained(
        source=source,
        state_dict={
            key: value
            for key, value in checkpoint["state_dict"].items()
            if isinstance(key, str) and isinstance(value, torch.Tensor)
        },
        network=dict(network),
        data={key: value for key, value in (data or {}).items() if key != "_target_"},
        module={key: value for key, value in arguments.items() if key not in ("net", "run_config")},
        step=step if isinstance(step, int) and not isinstance(step, bool) else None,
        mean_image=mean_image if isinstance(mean_image, torch.Tensor) else None,
    )


def data_arguments(trained: Trained) -> dict[str, Any]:
    """The data module's arguments that ``trained`` records, checked against its signature."""
    from resnet_cifar.data import CIFARDataModule

    try:
        return keyword_arguments(CIFARDataModule.__init__, trained.data, "data setting")
    except BadSetting as bad:
        raise CheckpointError(f"{trained.source}: {bad}") from None


def network_settings(trained: Trained) -> dict[str, Any]:
    """The network's settings as plain values (for comparing with a run's config)."""
    try:
        return {key: plain_value(value, f"network setting {key}") for key, value in trained.network.items()}
    except BadSetting as bad:
        raise CheckpointError(f"{trained.source}: {bad}") from None


def check_same_network(trained: Trained, model_config: Mapping[str, Any]) -> None:
    """Refuse a checkpoint of another network, depth, shortcut or variant than ``model_config``."""
    saved = network_settings(trained)
    keys = sorted(set(saved) | set(model_config), key=lambda key: (key != "_target_", key))
    differences = [key for key in keys if saved.get(key) != model_config.get(key)]
    if differences:
        describe = lambda model: ", ".join(f"{key}={model.get(key)}" for key in differences)  # noqa: E731
        raise CheckpointError(
            f"{trained.source} holds model ({describe(saved)}) but this run is configured for "
            f"model ({describe(model_config)}); resume with the checkpoint's settings or start a new run"
        )
