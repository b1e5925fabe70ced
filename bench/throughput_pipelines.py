"""The pipelines bench/throughput.py can measure, and the project's training config each one runs.

A pipeline's name says what it compiles: nothing (project, bare, classic), the network
(project-compile, bare-compile: module.compile=true) or the whole training step (project-step,
bare-step: module=whole_step). ``compose_config`` gives the composed Hydra config of one
measurement: the run's device, precision, depth, batch size and data, and enough steps for the
warm-up and the timed steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PIPELINES = ("project", "bare", "classic", "project-compile", "bare-compile", "project-step", "bare-step")
# What --compile adds, by what is compiled: the network (module.compile=true) or the whole step
# (module=whole_step).
COMPILED_PIPELINES = {"network": ("project-compile", "bare-compile"), "step": ("project-step", "bare-step")}
DEFAULT_PIPELINES = ("project", "bare", "classic")
# The pairs whose difference is Lightning's share: the project's pipeline and the bare loop over
# the same model and data.
HOST_OVERHEAD_PAIRS = (("project", "bare"), *COMPILED_PIPELINES.values())


def compile_scope_of(pipeline: str) -> str | None:
    """What a pipeline compiles: "network", "step" (the whole step), or None."""
    return next((scope for scope, pipelines in COMPILED_PIPELINES.items() if pipeline in pipelines), None)


def data_overrides(args: argparse.Namespace) -> list[str]:
    """The data of a run: ``--data-root``'s CIFAR-10, or synthetic images of ``--synthetic-size``."""
    if args.data_root:
        return [f"data.root={args.data_root}"]
    val_size = args.synthetic_size // 10  # 5000 of 50k, as the real split
    return ["data=synthetic", f"data.synthetic_sizes=[{args.synthetic_size},1000]", f"data.val_size={val_size}"]


def compose_config(args: argparse.Namespace, compile_scope: str | None, output_dir: str) -> Any:
    """The project's training config for this measurement, composed as the command composes it."""
    from resnet_cifar.train import compose_config as compose_run_config

    overrides = [
        f"trainer={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"trainer.precision={args.precision}",
        # One step more than timed: the final step's checkpoint and validation are not a training step.
        f"trainer.max_steps={args.warmup + args.steps + 1}",
        f"model.depth={args.depth}",
        *(["module=whole_step"] if compile_scope == "step" else []),
        f"module.compile={str(compile_scope is not None).lower()}",
        f"data.batch_size={args.batch_size}",
        *([f"module.channels_last={args.channels_last}"] if args.channels_last else []),
        *data_overrides(args),
    ]
    return compose_run_config(overrides, output_dir)
