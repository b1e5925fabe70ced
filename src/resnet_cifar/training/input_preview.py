"""What the network is fed, shown once per run in TensorBoard: augmented images and the graph."""

import math
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageDraw

from resnet_cifar.data.datamodule import RawTrainBatch

LABEL_HEIGHT = 13  # pixels above each image for its class name


class LogInputsOnce(L.Callback):
    """At a run's first training step, log a grid of its augmented training images with their
    labels (IMAGES tab, ``inputs/augmented_batch``) and the network's graph (GRAPHS tab).

    The images are the first ``num_images`` of the first batch exactly as the network receives
    them, shown with the mean image added back. A resumed run logged them already at its start
    and does not log them again.
    """

    def __init__(self, num_images: int = 64, graph: bool = True) -> None:
        self.num_images = num_images
        self.graph = graph

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if (trainer.current_epoch, batch_idx, trainer.global_step) != (0, 0, 0):
            return  # not the run's first batch: a later one, or a resumed run
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not trainer.is_global_zero or not loggers:
            return
        if isinstance(batch, RawTrainBatch):  # module=whole_step augments inside the step
            images, labels = trainer.datamodule.training_inputs(batch.images, batch.crop_flip), batch.labels
        else:
            images, labels = batch
        shown = images[: self.num_images].detach().float().cpu()
        mean_image = getattr(trainer.datamodule, "mean_image", None)  # subtracted from the input
        if mean_image is not None:
            shown = shown + mean_image
        grid = image_grid(shown, labels[: len(shown)].tolist(), class_names(trainer))
        for logger in loggers:
            logger.experiment.add_image("inputs/augmented_batch", grid, global_step=0, dataformats="HWC")
            if self.graph:
                log_graph(logger, pl_module.net, images[:1].detach())


def class_names(trainer: L.Trainer) -> tuple[str, ...]:
    arrays = getattr(trainer.datamodule, "arrays", None)
    return tuple(arrays.classes) if arrays is not None else ()


def image_grid(images: torch.Tensor, labels: list[int], names: tuple[str, ...], scale: int = 3) -> np.ndarray:
    """A square grid (H x W x 3, uint8) of RGB ``images`` in [0, 1], each under its class name.

    Drawn with PIL rather than matplotlib: training needs no plotting library.
    """
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    size = images.shape[-1] * scale
    cell_w, cell_h = size + 4, size + LABEL_HEIGHT
    grid = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for index, (image, label) in enumerate(zip(pixels, labels)):
        left, top = index % columns * cell_w, index // columns * cell_h
        tile = Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST)
        grid.paste(tile, (left + 2, top + LABEL_HEIGHT))
        draw.text((left + 2, top + 1), names[label] if label < len(names) else str(label), fill="black")
    return np.asarray(grid)


def log_graph(logger: TensorBoardLogger, net: torch.nn.Module, example: torch.Tensor) -> None:
    """The network's graph, traced in eval mode on one example (the batch norms' statistics and
    the weights are left as they were)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on deprecation and constants
        logger.experiment.add_graph(net, example.float())
