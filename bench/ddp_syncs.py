"""Collectives per training step of a 2-process DDP run on the CPU (gloo), for
``bench/throughput.py --sync-check`` on the CPU.

On the CPU a ``.item()`` costs nothing, but a collective called from Python blocks the host until
every process reaches it: those are the syncs of a DDP step. DDP's own gradient all-reduce runs in
its C++ reducer, overlapped with the backward pass, and is not counted. Two runs of the project's
training command (``trainer=ddp trainer.accelerator=cpu``): with Lightning 2.6.6's SIGTERM
handling (``~callbacks.preemption``: its per-step flag broadcast stays), and as configured (the
project's preemption callback, which removes it; resnet_cifar/training/lightning_compat.py).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import lightning as L
import torch.distributed

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
COLLECTIVES = (
    "broadcast",
    "all_reduce",
    "all_gather",
    "all_gather_object",
    "broadcast_object_list",
    "barrier",
    "reduce",
    "gather",
)


class CountCollectives(L.Callback):
    """Counts the torch.distributed collectives called from Python in training steps
    ``warmup``+1 .. ``warmup``+``steps`` (from the end of step ``warmup``: Lightning's SIGTERM
    broadcast opens each step, before its hooks), and writes ``syncs_rank<r>.json``."""

    def __init__(self, warmup: int, steps: int, output_dir: str) -> None:
        self.warmup, self.steps, self.output_dir = warmup, steps, Path(output_dir)
        self.counting = False
        self.sites: collections.Counter[str] = collections.Counter()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for name in COLLECTIVES:
            original = getattr(torch.distributed, name)

            def counted(*args, _original=original, _name=name, **kwargs):
                if self.counting:
                    caller = traceback.extract_stack(limit=2)[0]
                    self.sites[f"{_name} from {Path(caller.filename).name}:{caller.lineno}"] += 1
                return _original(*args, **kwargs)

            setattr(torch.distributed, name, counted)

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.warmup:
            self.counting = True
        elif trainer.global_step == self.warmup + self.steps:
            self.counting = False
            result = {"syncs_per_step": sum(self.sites.values()) / self.steps, "sites": self.sites.most_common(5)}
            (self.output_dir / f"syncs_rank{trainer.global_rank}.json").write_text(json.dumps(result))


def measure(lightning_sigterm: bool, depth: int, batch_size: int, warmup: int, steps: int, timeout: float) -> dict:
    """Syncs per step of rank 0 and rank 1 in one 2-process run (``error`` when it failed)."""
    with tempfile.TemporaryDirectory() as output_dir:
        command = [
            sys.executable,
            "-m",
            "resnet_cifar.train",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "data=synthetic",
            f"model.depth={depth}",
            f"data.batch_size={batch_size}",
            f"trainer.max_steps={warmup + steps}",
            "+trainer.limit_val_batches=0",
            "+trainer.limit_test_batches=1",
            "data.synthetic_sizes=[10000,1000]",
            "~callbacks.progress_bar",
            "~callbacks.input_preview",
            "~callbacks.best_checkpoint",
            f"hydra.run.dir={output_dir}",
            "+callbacks.count_syncs._target_=ddp_syncs.CountCollectives",
            f"+callbacks.count_syncs.warmup={warmup}",
            f"+callbacks.count_syncs.steps={steps}",
            f"+callbacks.count_syncs.output_dir={output_dir}",
            *(["~callbacks.preemption"] if lightning_sigterm else []),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), str(BENCH), env.get("PYTHONPATH")]))
        completed = subprocess.run(command, cwd=output_dir, env=env, capture_output=True, text=True, timeout=timeout)
        files = sorted(Path(output_dir).glob("syncs_rank*.json"))
        if completed.returncode != 0 or len(files) != 2:
            tail = (completed.stdout + completed.stderr).strip().splitlines()[-10:]
            return {"error": f"exit status {completed.returncode}: " + " | ".join(tail)}
        return {path.stem.removeprefix("syncs_"): json.loads(path.read_text()) for path in files}


def report(depth: int, batch_size: int, warmup: int, steps: int, timeout: float) -> list[str]:
    """The table lines: syncs per step with Lightning's SIGTERM handling and as configured."""
    lines = []
    for label, lightning_sigterm in (("Lightning 2.6.6 SIGTERM handling", True), ("project (as configured)", False)):
        result = measure(lightning_sigterm, depth, batch_size, warmup, steps, timeout)
        if "error" in result:
            lines.append(f"ResNet-{depth} DDP 2 CPU processes (gloo), {label}: failed ({result['error']})")
            continue
        rank0 = result["rank0"]
        sites = ", ".join(f"{site} x{count}" for site, count in rank0["sites"]) or "none"
        lines.append(
            f"ResNet-{depth} DDP 2 CPU processes (gloo), {label}: host syncs (collectives) per timed step = "
            f"{rank0['syncs_per_step']:.3f} on rank 0, {result['rank1']['syncs_per_step']:.3f} on rank 1 "
            f"(where: {sites})"
        )
    return lines
