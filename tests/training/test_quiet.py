"""Noise before the first step is silenced, each filter still meets what it filters (so that a
Lightning or torch upgrade that changes a message fails here), and true warnings still show."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from commands import assert_ok, describe, run_command
from resnet_cifar.models import cifar_resnet
from resnet_cifar.training import quiet
from resnet_cifar.training.quiet import NetworkSummary, forward_flops_per_image, silence_known_noise
from tiny_runs import TINY_SYNTHETIC_RUN

# What must not be printed, and what it comes from.
NOISE = {
    "litlogger": "Lightning's litlogger advertisement",
    "litmodels": "Lightning's litmodels advertisement",
    "LeafSpec": "torch's deprecation of LeafSpec, met in Lightning's pytree helper",
    "Total FLOPs": "Lightning's model summary without an example input",
    "not resumable": "Lightning's doubt about a loader without state_dict (the project's has one)",
    "Trainer already configured with model summary": "Lightning's note that it keeps our summary",
}


@pytest.fixture()
def filters_restored() -> Iterator[None]:
    """Each test starts without the project's filters and leaves none behind."""
    logger = logging.getLogger(quiet.LIGHTNING_INFO_LOGGER)
    logger.removeFilter(quiet._LIGHTNING_INFO_FILTER)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield
    logger.removeFilter(quiet._LIGHTNING_INFO_FILTER)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def lightning_info_of_a_test_run(tmp_path: Path) -> list[str]:
    """What Lightning logs as information while a Trainer is built and tests a model."""
    logger = logging.getLogger(quiet.LIGHTNING_INFO_LOGGER)
    records = Records()
    logger.addHandler(records)
    try:
        # No ModelCheckpoint: Lightning adds its own, and advertises litmodels for it.
        trainer = L.Trainer(
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            callbacks=[NetworkSummary()],
            default_root_dir=tmp_path,
        )
        trainer.test(BoringModel(), verbose=False)
    finally:
        logger.removeHandler(records)
    return records.messages


def test_advertisements_and_summary_notice_are_met_and_dropped(filters_restored: None, tmp_path: Path) -> None:
    before = "\n".join(lightning_info_of_a_test_run(tmp_path))
    assert "litlogger" in before and "litmodels" in before
    assert "Trainer already configured with model summary callbacks" in before
    assert "GPU available" in before
    silence_known_noise()
    after = "\n".join(lightning_info_of_a_test_run(tmp_path))
    assert "litlogger" not in after and "litmodels" not in after and "model summary" not in after
    assert "GPU available" in after, "other information stays"


def test_leafspec_deprecation_is_met_and_dropped(filters_restored: None) -> None:
    from lightning.pytorch.utilities._pytree import _tree_flatten

    with warnings.catch_warnings(record=True) as caught:
        _tree_flatten(1.0)
    assert any(issubclass(w.category, FutureWarning) and "LeafSpec" in str(w.message) for w in caught), caught
    silence_known_noise()
    with warnings.catch_warnings(record=True) as caught:
        _tree_flatten(1.0)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)  # elsewhere: kept
    assert [str(w.message) for w in caught] == ["`isinstance(treespec, LeafSpec)` is deprecated"]


@pytest.mark.parametrize(
    "environment,false",
    [
        ({}, True),  # no SLURM job: on a login node, under torchrun
        (
            {"SLURM_JOB_ID": "41", "SLURM_STEP_ID": "0"},
            True,
        ),  # a task that srun started (in salloc Lightning misses it)
        ({"SLURM_JOB_ID": "41"}, False),  # a command in an allocation without srun: the advice stands
    ],
    ids=["no-job", "srun-task", "allocation-without-srun"],
)
def test_the_srun_hint_is_met_and_dropped_only_where_it_is_false(
    environment, false, filters_restored, tmp_path, monkeypatch
) -> None:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    srun = tmp_path / "srun"  # SLURM installed, as Lightning looks for it
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for name in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    hint = "The `srun` command is available on your system but is not used"
    with warnings.catch_warnings(record=True) as caught:
        SLURMEnvironment.detect()
    assert [str(w.message) for w in caught if hint in str(w.message)], "Lightning gives the hint here"
    silence_known_noise()
    with warnings.catch_warnings(record=True) as caught:
        SLURMEnvironment.detect()
    assert any(hint in str(w.message) for w in caught) is not false


def test_summary_counts_the_networks_flops() -> None:
    """Against a count by hand: 2 x multiply-adds of every convolution and the classifier."""
    net = cifar_resnet(depth=20)
    expected = []

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            expected.append(2 * kernel * output.numel())
        elif isinstance(module, torch.nn.Linear):
            expected.append(2 * module.in_features * module.out_features)

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    net.train()
    flops = forward_flops_per_image(net)
    assert flops == sum(expected) and 80e6 < flops < 83e6  # ResNet-20: ~41M multiply-adds
    assert net.training, "the network is handed back in training mode"


# --- end to end: a run and its resume say only what is true -------------------------------------


@pytest.mark.slow
def test_run_and_resume_print_no_noise_keep_true_warnings(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # An unknown compile mode makes torch.compile fail: a true warning that must still show.
    settings = (
        *TINY_SYNTHETIC_RUN,
        "module.compile=true",
        "module.compile_mode=no-such-mode",
        "~callbacks.input_preview",
    )
    outputs = []
    for steps in (4, 6):  # 8 steps an epoch: the second run resumes mid-epoch
        # A fresh interpreter: what importing the libraries prints is checked too.
        command = [
            sys.executable,
            "-m",
            "resnet_cifar.train",
            *settings,
            f"trainer.max_steps={steps}",
            f"hydra.run.dir={run_dir}",
        ]
        completed = assert_ok(run_command(command, tmp_path))
        outputs.append(completed)
    assert "resuming from" in outputs[1].output, describe(outputs[1])
    for completed in outputs:
        for text, source in NOISE.items():
            assert text not in completed.output, f"{source}:\n{describe(completed)}"
        assert re.search(
            r"CompileFallbackWarning: compiling was asked for \(module.compile=true\) "
            r"but torch.compile is unavailable or failed",
            completed.output,
        ), describe(completed)
        assert "network: CifarResNet, 75,290 parameters (0.30 MB), 24.5 MFLOPs per image forward" in completed.output
