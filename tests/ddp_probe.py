"""A test-only callback that records which training images each process is given.

Loaded into real training runs with ``+callbacks.probe._target_=ddp_probe.RecordTrainingImages``
(the tests put this folder on PYTHONPATH, which DDP's child processes inherit).
"""

import json
from pathlib import Path

import lightning as L


class RecordTrainingImages(L.Callback):
    """Writes ``probe_rank<r>.json``: per epoch, the image indices of each batch this rank took."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.batches: dict[int, list[list[int]]] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dataset = trainer.train_dataloader.dataset
        probe = self

        class Recording(type(dataset)):
            def __getitem__(self, plan):
                probe.batches.setdefault(trainer.current_epoch, []).append(plan.indices.tolist())
                return super().__getitem__(plan)

        dataset.__class__ = Recording

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self.output_dir / f"probe_rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"world_size": trainer.world_size, "steps": trainer.global_step, "batches": self.batches}))
