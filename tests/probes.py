"""Test-only callbacks, loaded into real training runs from the command line, e.g. with
``+callbacks.probe._target_=probes.RecordTrainingImages`` (the tests put this folder on
PYTHONPATH, which DDP's child processes inherit).
"""

import json
import os
import signal
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


class KillOnce(L.Callback):
    """SIGKILLs its own process, as a preemption would, once training of the run with seed
    ``seed`` reaches step ``at_step``; it leaves ``marker`` so that the relaunched run goes on.

    Its settings come from the environment (KILL_AT_STEP, KILL_SEED, KILL_MARKER), so that the
    one command-line override that adds it is the same in the killed and the relaunched sweep.
    """

    def __init__(self) -> None:
        self.at_step = int(os.environ["KILL_AT_STEP"])
        self.seed = int(os.environ["KILL_SEED"])
        self.marker = Path(os.environ["KILL_MARKER"])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        seed = pl_module.hparams.run_config["seed"]
        if seed == self.seed and trainer.global_step == self.at_step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
