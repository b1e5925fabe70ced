"""Test-only callbacks, loaded into real training runs from the command line, e.g. with
``+callbacks.probe._target_=probes.RecordTrainingImages`` (the tests put this folder on
PYTHONPATH, which DDP's child processes inherit).
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import lightning as L
import torch
from hydra.experimental.callback import Callback


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
        path.write_text(
            json.dumps({"world_size": trainer.world_size, "steps": trainer.global_step, "batches": self.batches})
        )


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
        seed = trainer.datamodule.hparams.seed
        if seed == self.seed and trainer.global_step == self.at_step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


class Fault(L.Callback):
    """Injects the faults listed in the environment variable FAULTS into the runs of a sweep:
    ``seed:rank:how`` entries separated by commas, e.g. ``0:1:sigkill,1:0:raise,2:1:nan``. In the
    run with that seed, the process of that global rank, at training step FAULT_AT_STEP (default
    2): ``raise`` an exception, ``sigkill`` itself, or ``nan``: make its loss NaN (that process only).
    """

    def __init__(self) -> None:
        self.at_step = int(os.environ.get("FAULT_AT_STEP", "2"))
        entries = [entry.split(":") for entry in os.environ["FAULTS"].split(",") if entry]
        self.faults = {(int(seed), int(rank)): how for seed, rank, how in entries}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # First among the callbacks, as a fault of the training step itself comes before all of them.
        trainer.callbacks.remove(self)
        trainer.callbacks.insert(0, self)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        how = self.faults.get((trainer.datamodule.hparams.seed, trainer.global_rank))
        if how is None or trainer.global_step != self.at_step:
            return
        if how == "raise":
            raise RuntimeError(f"probe: rank {trainer.global_rank} fails at step {trainer.global_step}")
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "nan":
            outputs["loss"] = torch.tensor(float("nan"))


class RecordProcessState(Callback):
    """A Hydra callback: appends this process's thread count and environment to
    ``<sweep dir>/process_state.jsonl`` before and after every job (one line each, with the pid)."""

    def _record(self, config, when: str) -> None:
        state = {
            "pid": os.getpid(),
            "job": int(config.hydra.job.num),
            "when": when,
            "threads": torch.get_num_threads(),
            "environ": dict(os.environ),
        }
        with open(Path(config.hydra.sweep.dir) / "process_state.jsonl", "a") as file:
            file.write(json.dumps(state) + "\n")

    def on_job_start(self, config, **kwargs) -> None:
        self._record(config, "start")

    def on_job_end(self, config, job_return, **kwargs) -> None:
        self._record(config, "end")


def ignore_stop_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)


class InterruptOnSlurm(L.Callback):
    """Interrupts its own SLURM job once per attempt (SLURM_RESTART_COUNT), at the first step the
    attempt trains, as ``plan`` says for each attempt in turn (later attempts run to the end): a
    signal's name sends it with ``scancel --signal=<name>`` (a preemption), ``cancel`` cancels the
    job with ``scancel``, ``time_limit`` waits (up to 150 s) for the signal SLURM sends before the
    time limit (hydra.launcher.timeout_min, signal_delay_s). The default: attempt 0 USR2, attempt 1
    TERM, attempt 2 its time limit."""

    def __init__(self, plan: str = "USR2,TERM,time_limit") -> None:
        self.plan = plan.split(",")
        self.done = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if self.done or attempt >= len(self.plan):
            return
        self.done = True
        how = self.plan[attempt]
        if how != "time_limit":
            if trainer.global_rank == 0:
                array = os.environ.get("SLURM_ARRAY_JOB_ID")  # an array's own id names the whole array
                job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
                # scancel runs inside the job, so the signal it asks for reaches it too when it has not
                # exited yet: it ignores the signals the job is sent.
                subprocess.run(
                    ["scancel", *([] if how == "cancel" else [f"--signal={how}"]), job],
                    check=True,
                    preexec_fn=ignore_stop_signals,
                )
            return
        from resnet_cifar.launch.preemption import SaveAndStopOnSignal

        (watcher,) = [c for c in trainer.callbacks if isinstance(c, SaveAndStopOnSignal)]
        for _ in range(300):
            if watcher.received:
                return
            time.sleep(0.5)


class SignalOnce(L.Callback):
    """Sends SIGNAL (a name, default SIGTERM) once, at training step SIGNAL_AT_STEP, from global
    rank 0 to SIGNAL_TO: ``self``, or ``parent`` (the job's process, which starts DDP's processes);
    it leaves SIGNAL_MARKER so that the rerun goes on."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        marker = Path(os.environ["SIGNAL_MARKER"])
        if trainer.global_rank != 0 or trainer.global_step != int(os.environ["SIGNAL_AT_STEP"]) or marker.exists():
            return
        marker.touch()
        target = os.getppid() if os.environ.get("SIGNAL_TO") == "parent" else os.getpid()
        os.kill(target, signal.Signals[os.environ.get("SIGNAL", "SIGTERM")])


class RecordBatchHooks(L.Callback):
    """Writes ``hooks_rank<r>.json``: the per-batch training hooks this rank's callback received,
    in order, the gradients' norm at each ``on_before_optimizer_step`` (what a gradient-norm
    logger reads), and their largest absolute value at the end of each batch (after any clipping)."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.calls: list[str] = []
        self.gradient_norms: list[float] = []
        self.largest_gradients: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self.calls.append("on_train_batch_start")

    def on_before_backward(self, *args) -> None:
        self.calls.append("on_before_backward")

    def on_after_backward(self, *args) -> None:
        self.calls.append("on_after_backward")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self.calls.append("on_before_optimizer_step")
        grads = [p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]
        self.gradient_norms.append(float(torch.cat(grads).norm()) if grads else 0.0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self.calls.append("on_train_batch_end")
        grads = [p.grad.abs().max() for p in pl_module.parameters() if p.grad is not None]
        self.largest_gradients.append(float(torch.stack(grads).max()) if grads else 0.0)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self.output_dir / f"hooks_rank{trainer.global_rank}.json"
        recorded = {
            "calls": self.calls,
            "gradient_norms": self.gradient_norms,
            "largest_gradients": self.largest_gradients,
        }
        path.write_text(json.dumps(recorded))


class WaitAtStep(L.Callback):
    """Holds training at step WAIT_AT_STEP until the file WAIT_RELEASE exists, after writing
    ``waiting_at_step`` (rank 0) into the run directory ``output_dir``: a test can act on a run
    known to be mid-training (its checkpoint of an earlier step written), such as stop its node."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        release = Path(os.environ["WAIT_RELEASE"])
        if trainer.global_step != int(os.environ["WAIT_AT_STEP"]) or release.exists():
            return
        if trainer.global_rank == 0:
            (self.output_dir / "waiting_at_step").write_text(str(trainer.global_step))
        while not release.exists():
            time.sleep(0.2)


class WaitForEachOther(L.Callback):
    """Holds each run at the start of training until ``parties`` runs (processes) have reached
    it, each leaving a file named after its process id in ``folder``: runs that all finish were
    all training at once, whatever the speed of the machine. A run that waits ``timeout_s`` in
    vain fails, saying that the runs did not overlap."""

    def __init__(self, folder: str, parties: int = 2, timeout_s: float = 120) -> None:
        self.folder = Path(folder)
        self.parties = parties
        self.timeout_s = timeout_s

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / str(os.getpid())).touch()
        deadline = time.monotonic() + self.timeout_s
        while len(list(self.folder.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no other run started training within {self.timeout_s} s: the runs did not overlap")
            time.sleep(0.1)
