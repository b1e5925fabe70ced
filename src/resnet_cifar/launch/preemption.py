"""Preemption and time limits: on SIGTERM, USR1 or the requeue signal a run saves its checkpoint at
the end of the current step and stops; in a SLURM job (``hydra/launcher=slurm``, or an sbatch
script of one's own such as scripts/slurm/train.sbatch) the job is requeued and resumes from that
checkpoint, losing nothing.

A signal handler only notes the signal: no collective and no file I/O inside a handler, which
may interrupt a collective of its own process. Every ``check_every_n_steps`` training steps the
processes agree whether any of them got a signal (one all-reduce; a single process just looks),
and all of them save ``last.ckpt`` at that same step and stop. A checkpoint written at the end of
a step records the data position, so the resumed run continues exactly where this one stopped.

Under submitit the requeue itself is submitit's: its handler of the requeue signal (installed
before the job starts) is called once the checkpoint is written, on SIGTERM too; it requeues the
job (counting time-outs against ``hydra.launcher.max_num_timeout``) and exits. In any other SLURM
job, global rank 0 requeues it with ``scontrol requeue`` (once: the processes exit next). Neither
requeues a job that SLURM would refuse or that is ending: ``scancel`` (without ``--signal``) and a time limit
reached without warning send SIGTERM to a job already on its way out, which stays ended. Then
all processes exit with status 128 + the signal's number, as they do outside SLURM, where
rerunning the command resumes the run.

This replaces Lightning 2.6.6's own SIGTERM handling while training (see
:mod:`resnet_cifar.training.lightning_compat`), which broadcasts inside the signal handler and
reads a flag back from rank 0 on every training step, and its SLURM auto-requeue on USR1
(``SLURMEnvironment(auto_requeue=True)``), which saves a separate ``hpc_ckpt_<n>.ckpt`` from inside
the handler (at no step the processes agreed on, with a barrier inside the handler) and resumes
from it only when no checkpoint is given: runs in SLURM get SLURM's environment with
``auto_requeue=False`` (:mod:`resnet_cifar.launch.external`, conf/trainer/default.yaml); were it
on, Lightning would still leave USR1 alone, as the callback handles it from ``setup`` on.
"""

import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch

from resnet_cifar.launch.external import slurm_job_id
from resnet_cifar.training.lightning_compat import without_per_step_sigterm_broadcast

log = logging.getLogger(__name__)


def requeue_signal() -> signal.Signals:
    """The signal SLURM sends before a time limit or a preemption, as submitit asks for it
    (``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default)."""
    return signal.Signals["SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")]


# SIGTERM; USR1, Lightning's convention for SLURM's warning before a time limit (sbatch
# --signal=USR1@120); the requeue signal that submitit asks for (USR2).
STOP_SIGNALS = tuple(dict.fromkeys((signal.SIGTERM, signal.SIGUSR1, requeue_signal())))
# The fields of `scontrol --oneliner show job` that tell whether a job can be requeued.
SCONTROL_FIELDS = re.compile(r"\b(JobState|BatchFlag|Requeue)=(\S+)")
Handler = Callable[[int, FrameType | None], Any] | int | None


def submitit_requeue_handler(handler: Handler) -> Callable[[int, FrameType | None], Any] | None:
    """``handler`` if it is submitit's checkpoint-and-requeue handler (the job runs under submitit)."""
    owner = getattr(handler, "__self__", None)
    if (
        type(owner).__module__.startswith("submitit.")
        and getattr(handler, "__name__", "") == "checkpoint_and_try_requeue"
    ):
        return handler  # type: ignore[return-value]
    return None


class SaveAndStopOnSignal(L.Callback):
    """On SIGTERM, USR1 or the requeue signal: save ``checkpoint`` at a step end, then stop (and
    requeue a SLURM job). Checks for a signal every ``check_every_n_steps`` steps under DDP (a
    collective), at every step in a single process."""

    def __init__(self, checkpoint: str | Path, check_every_n_steps: int = 25) -> None:
        self.checkpoint = Path(checkpoint)
        self.check_every_n_steps = check_every_n_steps
        self.received: int = 0  # the signal's number; 0 for none
        self._requeue: Callable[[int, FrameType | None], Any] | None = None  # submitit's
        self._slurm_job: str | None = None  # another SLURM job's id, requeued with scontrol
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
        self._slurm_job = None if self._requeue else slurm_job_id()
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
        trainer.save_checkpoint(self.checkpoint, weights_only=False)  # all of it, to resume from
        log.warning("%s: saved %s at step %d; stopping", name, self.checkpoint, trainer.global_step)
        if self._requeue is not None:
            # A job that is ending (a plain scancel: SIGTERM to a CANCELLED job) stays ended.
            job = slurm_job_id() or ""
            if not (
                trainer.is_global_zero
                and requeue_refused(job, "run the sweep's command again (finished runs are kept)")
            ):
                requeue(self._requeue)  # rank 0: requeues, then exits; other ranks: returns
        elif self._slurm_job is not None:
            if trainer.is_global_zero:
                requeue_slurm_job(self._slurm_job, trainer.default_root_dir)
            # Every process waits for it: a task that ends first may make srun end the others
            # (--kill-on-bad-exit). SLURM's SIGTERM after the requeue is only noted by now.
            trainer.strategy.barrier("requeue")
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


def requeue_refusal(job: dict[str, str]) -> str | None:
    """Why a job with these ``scontrol show job`` fields is not requeued; None if it is. Unknown
    fields (scontrol could not tell) do not stop the requeue."""
    if job.get("BatchFlag") == "0":
        return "it is an interactive allocation (salloc), which SLURM does not requeue"
    if job.get("Requeue") == "0":
        return "it was submitted with --no-requeue (submit it with --requeue)"
    if job.get("JobState", "RUNNING") != "RUNNING":
        return f"it is ending (JobState={job['JobState']}: cancelled, or at its time limit)"
    return None


def requeue_refused(job_id: str, how_to_resume: str) -> bool:
    """Whether SLURM job ``job_id`` must not be requeued (:func:`requeue_refusal`), said in one
    line with ``how_to_resume``."""
    shown = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True, check=False
    )
    refusal = requeue_refusal(dict(SCONTROL_FIELDS.findall(shown.stdout)))
    if refusal is not None:
        log.warning("SLURM job %s is not requeued: %s; to resume, %s", job_id, refusal, how_to_resume)
    return refusal is not None


def requeue_slurm_job(job_id: str, run_dir: str) -> None:
    """Requeue SLURM job ``job_id`` (``scontrol requeue``) unless :func:`requeue_refusal` says why
    not; the requeued job resumes from ``run_dir``'s checkpoint."""
    if requeue_refused(job_id, f"run the same command with hydra.run.dir={run_dir}"):
        return
    log.warning("requeueing SLURM job %s (scontrol requeue): the requeued job resumes in %s", job_id, run_dir)
    done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, check=False)
    # Ended by SIGTERM: by the requeue it asked for (see requeue()).
    if done.returncode not in (0, -signal.SIGTERM):
        log.warning(
            "SLURM job %s could not be requeued (%s); to resume, run the same command with hydra.run.dir=%s",
            job_id,
            done.stderr.strip() or f"scontrol exited with status {done.returncode}",
            run_dir,
        )


def not_main_thread() -> bool:
    import threading

    return threading.current_thread() is not threading.main_thread()
