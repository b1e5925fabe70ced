"""The training precision of a run whose config does not set one: bf16 mixed on GPUs, fp32 elsewhere.

conf/trainer/default.yaml sets ``precision: ${default_precision:${trainer.accelerator}}``, so
every trainer config (``trainer=ddp`` and SLURM jobs included) trains in bf16-mixed on GPUs and
in 32-true on the CPU, and ``trainer.precision=...`` on the command line replaces it. The value is
resolved where the run starts (on a SLURM node, in each DDP process), when the config is read.
"""

import torch
from omegaconf import OmegaConf

GPU_ACCELERATORS = ("gpu", "cuda")


def default_precision(accelerator: str) -> str:
    """Lightning's precision for ``accelerator``: ``bf16-mixed`` on a GPU ("auto" where CUDA is
    available), ``16-mixed`` on a GPU that lacks native bf16 (before Ampere), else ``32-true``."""
    cuda = torch.cuda.is_available()
    if accelerator not in GPU_ACCELERATORS and not (accelerator == "auto" and cuda):
        return "32-true"
    if cuda and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "16-mixed"  # fp16 with loss scaling: emulated bf16 would be slower than fp32
    return "bf16-mixed"


def register_resolvers() -> None:
    """``${default_precision:ACCELERATOR}`` for conf/trainer/default.yaml."""
    OmegaConf.register_new_resolver("default_precision", default_precision, replace=True)
