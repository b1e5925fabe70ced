"""What Lightning 2.6.6 prints before the first step that is not true, or not news, for this
project: silenced here, one targeted filter (or setting) per item, each with its reason.

Every other warning still shows: they may say something true (CompileFallbackWarning, a data
root that is missing, ...). tests/training/test_quiet.py checks that each filter still meets
what it filters, so that a Lightning or torch upgrade that changes a message shows up as a
failing test, not as noise coming back or a filter left matching nothing.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

import lightning as L
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import ModelSummary
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)

LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"
# (1) Advertisements, logged at every Trainer construction: for LitLogger where the Trainer has
# none (lightning/pytorch/trainer/connectors/logger_connector/logger_connector.py,
# configure_logger), and for litmodels where Lightning adds its default ModelCheckpoint, as in
# evaluate (lightning/pytorch/trainer/connectors/callback_connector.py).
ADVERTISEMENTS = r"Tip: .*(?:litlogger|litmodels)"

# (2) torch >= 2.10 deprecates constructing ``LeafSpec()``; Lightning's own pytree helper
# (lightning/pytorch/utilities/_pytree.py) still does, at every fit and test. Nothing for a user
# to do; Lightning has to move to ``treespec_leaf()``.
LEAFSPEC_MESSAGE = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
LEAFSPEC_MODULE = r"lightning\.pytorch\.utilities\._pytree"

# (3) "Total FLOPs: 0" in the model summary: Lightning counts FLOPs only by running
# ``example_input_array`` through the LightningModule, which would compile a compiled network
# for a batch of one. NetworkSummary below replaces Lightning's summary (conf/callbacks/default.yaml,
# ``model_summary``) and counts them on the plain network instead. Lightning then logs that it
# skips its own summary (lightning/pytorch/trainer/connectors/callback_connector.py), which is
# what the config asked for.
OWN_SUMMARY_NOTICE = r"Trainer already configured with model summary callbacks: .*NetworkSummary"

# (4) "The `srun` command is available on your system but is not used": Lightning's SLURM detection
# (lightning/fabric/plugins/environments/slurm.py, _validate_srun_used) warns wherever srun is
# installed and the process has no SLURM_NTASKS, twice a run. It is advice for a command run in a
# SLURM allocation without srun, and kept there; it is false for a run that is no SLURM job (on
# a login node, under torchrun) and for srun's own tasks in an salloc allocation (Lightning takes
# a job named "interactive" for none of SLURM's).
SRUN_HINT_MESSAGE = r"The `srun` command is available on your system but is not used"
SRUN_HINT_MODULE = r"lightning\.fabric\.plugins\.environments\.slurm"


def srun_hint_is_false() -> bool:
    """Whether this process is no SLURM job's, or one that srun started (see (4) above)."""
    return "SLURM_JOB_ID" not in os.environ or "SLURM_STEP_ID" in os.environ


class DropMessages(logging.Filter):
    """Drops the log records whose message matches one of ``patterns``."""

    def __init__(self, *patterns: str) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{pattern})" for pattern in patterns), re.DOTALL)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


_LIGHTNING_INFO_FILTER = DropMessages(ADVERTISEMENTS, OWN_SUMMARY_NOTICE)


def silence_known_noise() -> None:
    """Install the filters above (idempotent); entry points call it before building a Trainer."""
    warnings.filterwarnings("ignore", message=LEAFSPEC_MESSAGE, category=FutureWarning, module=LEAFSPEC_MODULE)
    if srun_hint_is_false():
        warnings.filterwarnings(
            "ignore", message=SRUN_HINT_MESSAGE, category=PossibleUserWarning, module=SRUN_HINT_MODULE
        )
    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if _LIGHTNING_INFO_FILTER not in logger.filters:
        logger.addFilter(_LIGHTNING_INFO_FILTER)


class NetworkSummary(ModelSummary):
    """The model summary as one line: the network's class, parameters, size and forward FLOPs per
    image, counted with torch's FlopCounterMode on the plain (uncompiled) network.

    Lightning's table lists the metric objects beside the network and FLOPs of 0 (see (3) above).
    Being a ModelSummary, it stops Lightning from adding its own.
    """

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        net = getattr(pl_module, "net", pl_module)
        parameters = sum(p.numel() for p in net.parameters())
        size_mb = sum(p.numel() * p.element_size() for p in net.parameters()) / 1e6
        flops = forward_flops_per_image(net)
        log.info(
            "network: %s, %s parameters (%.2f MB), %.1f MFLOPs per image forward",
            type(net).__name__,
            f"{parameters:,}",
            size_mb,
            flops / 1e6,
        )


def forward_flops_per_image(net: torch.nn.Module, image_shape: tuple[int, ...] = (3, 32, 32)) -> int:
    """FLOPs (a multiply-add counts 2) of one forward pass of one image, in evaluation mode."""
    parameter = next(net.parameters())
    image = torch.zeros(1, *image_shape, device=parameter.device, dtype=parameter.dtype)
    was_training = net.training
    counter = FlopCounterMode(display=False)
    try:
        net.eval()
        with torch.no_grad(), counter:
            net(image)
    finally:
        net.train(was_training)
    return counter.get_total_flops()
