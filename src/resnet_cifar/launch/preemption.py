"""Preemption and time limits: on SIGTERM or the requeue signal a run saves its checkpoint at the
end of the current step and stops; under submitit (``hydra/launcher=slurm``) the job is requeued
and resumes from that checkpoint, losing nothing.

A signal handler only notes the signal: no collective and no file I/O inside a handler, which
may interrupt a collective of its own process. Every ``check_every_n_steps`` training steps the
processes agree whether any of them got a signal (one all-reduce; a single process just looks),
and all of them save ``last.ckpt`` at that same step and stop. A checkpoint written at the end of
a step records the data position, so the resumed run continues exactly where this one stopped.

Under submitit the requeue itself is submitit's: its handler of the requeue signal (installed
before the job starts) is called once the checkpoint is written, on SIGTERM too; it requeues the
job (counting time-outs against ``hydra.launcher.max_num_timeout``) and exits. Elsewhere the run
exits with status 128 + the signal's number, and rerunning its command resumes it.

This replaces Lightning 2.6.6's own SIGTERM handling while training (see
:mod:`resnet_cifar.training.lightning_compat`), which broadcasts inside the signal handler and
reads a flag back from rank 0 on every training step.
"""

import logging
import os
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any, Callable

import lightning as L
import torch

from resnet_cifar.training.lightning_compat import without_per_step_sigterm_broadcast

log = logging.getLogger(__name__)


def requeue_signal() -> signal.Signals:
    """The signal SLURM sends before a time limit or a preemption, as submitit asks for it
    (``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default)."""
    return signal.Signals["SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")]


STOP_SIGNALS = (signal.SIGTERM, requeue_signal())
Handler = Callable[[int, FrameType | None], Any] | int | None


def submitit_requeue_handler(handler: Handler) -> Callable[[int, FrameType | None], Any] | None:
    """``handler`` if it is submitit's checkpoint-and-requeue handler (the job runs under submitit)."""
    owner = getattr(handler, "__self__", None)
    if type(owner).__module__.startswith("submitit.") and getattr(handler, "__name__", "") == "checkpoint_and_try_requeue":
        return handler  # type: ignore[return-value]
    return None


class SaveAndStopOnSignal(L.Callback):
    """On SIGTERM or the requeue signal: save ``checkpoint`` at a step end, then stop (and requeue
    under submitit). Checks for a signal every ``check_every_n_steps`` steps under DDP (a
    collective), at every step in a single process."""

    def __init__(self, checkpoint: str | Path, check_every_n_steps: int = 25) -> None:
        self.checkpoint = Path(checkpoint)
        self.check_every_n_steps = check_every_n_steps
        self.received: int = 0  # the signal's number; 0 for none
        self._requeue: Callable[[int, FrameType | None], Any] | None = None
        self._previous: dict[int, Handler] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum

    def _install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._note)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not_main_thread():
            return
        without_per_step_sigterm_broadcast(trainer)
        self._previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        self._requeue = submitit_requeue_handler(self._previous[requeue_signal()])
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registered its own SIGTERM handler since setup (Trainer._run): take it back.
        if self._previous and not not_main_thread():
            self._install()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            return  # the run ends at this step anyway, with its own final checkpoint
        signum = self._received_anywhere(trainer, pl_module)
        if not signum:
            return
        name = signal.Signals(signum).name
        trainer.save_checkpoint(self.checkpoint)
        log.warning("%s: saved %s at step %d; stopping", name, self.checkpoint, trainer.global_step)
        if self._requeue is not None:
            requeue(self._requeue)  # rank 0: requeues, then exits; other ranks: returns
        raise SystemExit(128 + signum)

    def _received_anywhere(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        if trainer.world_size == 1:
            return self.received
        if trainer.global_step % self.check_every_n_steps:
            return 0
        flag = torch.tensor(self.received, device=pl_module.device)
        return int(trainer.strategy.reduce(flag, reduce_op="max"))


def requeue(handler: Callable[[int, FrameType | None], Any]) -> None:
    """Call submitit's requeue ``handler``, which runs ``scontrol requeue`` from inside the job.

    SLURM requeues a job by terminating its processes, and ``scontrol`` is one of them (a child
    of the job's task): when SLURM is quicker than ``scontrol`` returns, ``scontrol`` dies of that
    SIGTERM after the requeue was accepted. submitit takes that for a failed requeue and raises,
    which would record the job as failed although it is already queued again (seen on the test
    cluster, DDP jobs). Any other failure of the requeue stands.
    """
    try:
        handler(requeue_signal(), None)
    except subprocess.CalledProcessError as error:
        if error.returncode != -signal.SIGTERM or "requeue" not in error.cmd:
            raise
        log.info("scontrol requeue was ended by the requeue it asked for; the job is queued again")


def not_main_thread() -> bool:
    import threading

    return threading.current_thread() is not threading.main_thread()
