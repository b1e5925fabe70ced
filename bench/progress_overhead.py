"""What a progress display costs the host per training step, in one table.

    python bench/progress_overhead.py [--steps 3000] [--repeats 3]

A tiny model (Lightning's BoringModel: one 32x2 linear layer, batches of 2) makes the step
itself nearly free, so the time per step is mostly Lightning's loop and its callbacks. Each
display trains the same steps in this process, CPU only, no logger, no checkpoints; the table
shows the median over --repeats of the time per step, and its excess over training with no
display at all. Time is this process's processor time (all its threads, Rich's refresh thread
too), which other programs on the machine barely move. Terminal displays draw into an in-memory
Rich console forced to be a terminal.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from torch.utils.data import DataLoader

from resnet_cifar.training.progress import StepProgressBar


class ManyBatches(BoringModel):
    def __init__(self, batches: int) -> None:
        super().__init__()
        self.batches = batches

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 2 * self.batches), batch_size=2)


def terminal() -> dict:
    return {"file": io.StringIO(), "force_terminal": True, "width": 160}


DISPLAYS = {
    "none": lambda: None,
    "StepProgressBar, terminal": lambda: StepProgressBar(console_kwargs=terminal()),
    "StepProgressBar, plain lines (every 30 s)": lambda: StepProgressBar(
        console_kwargs={"file": io.StringIO(), "force_terminal": False}
    ),
    "Lightning RichProgressBar, terminal": lambda: RichProgressBar(console_kwargs=terminal()),
}


def seconds_per_step(display: str, steps: int) -> float:
    bar = DISPLAYS[display]()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        enable_progress_bar=bar is not None,
        callbacks=[bar] if bar else [],
    )
    model = ManyBatches(steps)
    started = time.process_time()
    trainer.fit(model)
    return (time.process_time() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)  # no intra-op threads spinning: their time would swamp the differences
    times: dict[str, list[float]] = {display: [] for display in DISPLAYS}
    for display in DISPLAYS:  # warm-up: imports, first-use caches
        seconds_per_step(display, 100)
    for _ in range(args.repeats):  # interleaved, so that a busy moment of the machine hits all
        for display in DISPLAYS:
            times[display].append(seconds_per_step(display, args.steps))
    base = statistics.median(times["none"])
    print(f"{args.steps} steps, median of {args.repeats}")
    print("| display | CPU µs/step | excess over none, µs/step |")
    print("| --- | ---: | ---: |")
    for display, values in times.items():
        median = statistics.median(values)
        print(f"| {display} | {median * 1e6:.0f} | {(median - base) * 1e6:+.0f} |")


if __name__ == "__main__":
    main()
