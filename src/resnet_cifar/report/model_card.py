"""The model card (README.md) of an exported network: what it is, how well it did on which data,
how it was trained and on what, from the run folder that the checkpoint lies in (read as data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_cifar.received_files import UnreadableFile, read_json
from resnet_cifar.report.environments import cell, value
from resnet_cifar.report.recipes import describe_recipe
from resnet_cifar.report.runs import Run, read_run
from resnet_cifar.training.checkpoints import Trained

# Which number of a run's metrics.json is the test error of which of its checkpoints.
TEST_ERROR_OF = {"last.ckpt": "test_err", "best.ckpt": "test_err_best_val"}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
ENVIRONMENT = (("resnet_cifar", "resnet-cifar"), ("commit", "commit"), ("torch", "torch"), ("lightning", "Lightning"))
ENVIRONMENT += (("device", "device"), ("precision", "precision"))


def run_of(ckpt_path: Path) -> Run | None:
    """The run whose ``checkpoints/`` holds ``ckpt_path``, read as the report reads it, or None."""
    run_dir = ckpt_path.parent.parent
    if ckpt_path.parent.name != "checkpoints" or not (run_dir / ".hydra" / "config.yaml").is_file():
        return None
    return read_run(run_dir)


def test_error(ckpt_path: Path, run: Run | None) -> tuple[float, Any] | None:
    """(test error in %, steps) of exactly this checkpoint: from its ``.eval.json`` beside it
    (written by evaluate), else from its run's metrics.json; None where neither records it."""
    try:
        evaluation = read_json(ckpt_path.with_suffix(".eval.json"))
        if isinstance(evaluation, dict) and is_number(evaluation.get("test_err")):
            return float(evaluation["test_err"]), evaluation.get("step")
    except UnreadableFile:
        pass
    key = TEST_ERROR_OF.get(ckpt_path.name)
    metrics = run.metrics if run is not None and run.metrics else {}
    if key and is_number(metrics.get(key)):
        return float(metrics[key]), metrics.get("steps") if key == "test_err" else None
    return None


def is_number(found: Any) -> bool:
    return isinstance(found, (int, float)) and not isinstance(found, bool)


def network_name(architecture: str, settings: dict[str, Any]) -> str:
    """``ResNet-20 (option A shortcuts)``, ``plain-56``, or the architecture of one's own network."""
    if architecture != "cifar_resnet":
        return f"{architecture} ({', '.join(f'{key}={item}' for key, item in settings.items())})"
    if not settings.get("residual", True):
        return f"plain-{settings.get('depth')} (no shortcuts)"
    return f"ResNet-{settings.get('depth')} (option {settings.get('shortcut', 'A')} shortcuts)"


def model_card(
    ckpt_path: Path,
    trained: Trained,
    architecture: str,
    settings: dict[str, Any],
    data: dict[str, Any],
    run: Run | None,
) -> str:
    """README.md of the network exported from ``ckpt_path``."""
    name = network_name(architecture, settings)
    parameters = sum(t.numel() for key, t in trained.network_weights.items() if not key.endswith(BUFFERS))
    dataset = data.get("dataset", "not recorded")
    result = test_error(ckpt_path, run)
    if result is None:
        tested = "not recorded (run `python -m resnet_cifar.evaluate ckpt_path=...` on the checkpoint)"
    else:
        steps = f" after {result[1]:,} training steps" if is_number(result[1]) else ""
        tested = f"{result[0]:.2f} % on the test images of the run's {dataset} data{steps}"
    held_out = data.get("val_size")
    held_out = f"{held_out:,}" if is_number(held_out) else "?"
    split = f"{held_out} training images held out for validation (split seed {data.get('split_seed')})"
    recipe = describe_recipe(run.recipe) if run is not None and run.network.target is not None else "not recorded"
    environment = run.environment if run is not None and isinstance(run.environment, dict) else None
    trained_with = (
        "; ".join(f"{label} {value(environment, key)}" for key, label in ENVIRONMENT) if environment else "not recorded"
    )
    rows = [
        ("network", f"{name}, {parameters:,} parameters"),
        ("test error", tested),
        ("data", f"{dataset}, {split}"),
        ("recipe", recipe),
        ("trained with", trained_with),
    ]
    return "\n".join(
        [
            "---",
            "library_name: resnet-cifar",
            "tags: [image-classification, resnet, cifar]",
            "---",
            "",
            f"# {cell(name)} on {cell(dataset)}",
            "",
            'A CIFAR network of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),',
            "trained and exported with resnet-cifar.",
            "",
            "| | |",
            "| --- | --- |",
            *(f"| {label} | {cell(text)} |" for label, text in rows),
            "",
            "## Use",
            "",
            "```python",
            "from resnet_cifar.models import load_pretrained",
            'net = load_pretrained("path/to/this/folder")  # or huggingface_hub.snapshot_download(repo_id)',
            "logits = net(images)  # RGB images, N x 3 x 32 x 32, values in [0, 1]",
            "```",
            "",
            "The network subtracts the mean image of its training split from its inputs itself.",
            "`model.safetensors` holds its weights and that mean image, `config.json` its settings.",
            "",
        ]
    )
