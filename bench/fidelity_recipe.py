"""The recipe that both paths of bench/fidelity.py train under, and the time stamps of their runs.

ResNet-20 under the paper's CIFAR-10 recipe (He et al. 2016, Sec. 4.2): SGD with lr 0.1, momentum
0.9 and weight decay 1e-4, batch 128, a 45k/5k train/val split drawn with split seed 0, pad-4
crop and flip; the lr is divided by 10 at half and three quarters of the steps.
"""

from __future__ import annotations

from datetime import datetime, timezone

SPLIT_SEED = 0
VAL_SIZE = 5000
BATCH_SIZE = 128
EVAL_BATCH_SIZE = 1000
LR, MOMENTUM, WEIGHT_DECAY, GAMMA = 0.1, 0.9, 1e-4, 0.1
DEPTH = 20
PADDING = 4


def milestones(steps: int) -> list[int]:
    """The paper's 32k and 48k of 64k steps, scaled to ``steps``."""
    return [steps // 2, 3 * steps // 4]


def utc_now() -> str:
    """Now, in UTC, to the second (ISO 8601): when a run started and finished."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
