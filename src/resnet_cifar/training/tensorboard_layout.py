"""Paper Fig. 6 in TensorBoard: a run's training and validation error on one chart.

TensorBoard's CUSTOM SCALARS tab draws the charts of a layout that a run writes into its event
file; with a sweep's runs selected, every run's two curves share the chart, as in the paper.
"""

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

# {category: {chart title: ["Multiline", [tag regular expressions]]}}, torch's add_custom_scalars format.
LAYOUT: dict[str, dict[str, list[Any]]] = {
    "Fig. 6": {
        "error % (train/err, val/err)": ["Multiline", ["^train/err$", "^val/err$"]],
        "loss (train/loss, val/loss)": ["Multiline", ["^train/loss$", "^val/loss$"]],
    },
}


class Fig6Layout(L.Callback):
    """Writes :data:`LAYOUT` once per run, at its start (a resumed run wrote it already)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != 0 or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars(LAYOUT)
