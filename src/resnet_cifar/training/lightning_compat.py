"""Every private Lightning internal the project uses, each with its reason. Read in Lightning 2.6.6.

pyproject.toml pins ``lightning>=2.6,<2.7`` for these; an upgrade must pass
tests/training/test_lightning_compat.py, which fails when one of them changes.

1. The per-step SIGTERM broadcast under DDP. Lightning 2.6.6 starts every training step
   (``_TrainingEpochLoop.advance``) with ``_broadcast_sigterm_tensor``: rank 0 broadcasts a 0/1
   flag and every rank reads it back with ``.item()``, a collective and a host sync per step
   (bench/ddp_syncs.py counts them; upstream: Lightning-AI/pytorch-lightning#21487, and PR
   #21640 proposes ``broadcast_sigterm_every_n_steps``). The project's preemption callback
   (:mod:`resnet_cifar.launch.preemption`) notes signals itself and lets the processes agree on
   them every N steps, so the broadcast is switched off on that one trainer's loop.
2. Whether Lightning would start a job's DDP processes itself by re-running the command
   (``_SubprocessScriptLauncher``): inside a Hydra sweep the project starts them instead
   (:mod:`resnet_cifar.launch.ddp`). No public attribute tells this launcher from the others.
3. The check that SLURMEnvironment runs when constructed (``_validate_srun_variables``): it refuses
   a job of ``--ntasks=N`` without ``--ntasks-per-node``, because such a job's tasks may be spread
   unevenly over its nodes. The tasks of one srun step (``salloc -n 2``, then ``srun -n 2 ...``)
   are checked by :class:`resnet_cifar.launch.external.SlurmTasks` against the step's own tasks
   per node instead, so :class:`SLURMEnvironmentForAnyTasks` leaves Lightning's check out.
4. Lightning's backward around the whole compiled step (``module=whole_step``), which has applied
   its gradients inside the step. Automatic optimisation would still zero the gradients and call
   the strategy's backward, with the ``on_before_zero_grad``, ``on_before_backward`` and
   ``on_after_backward`` hooks of every callback and the module: host time on every step, for
   gradients that do not exist (the module refuses callbacks that implement those hooks). The
   fit loop's ``_skip_backward`` flag, which Lightning's own StochasticWeightAveraging sets for its
   extra epoch, leaves both out (:func:`skip_backward`).
5. Two protected methods of RichProgressBar, which the project's progress bar
   (:class:`resnet_cifar.training.progress.StepProgressBar`) extends: ``_init_progress``, which
   starts Rich's live display with the bar's columns and Lightning's metrics column (every hook of
   RichProgressBar that shows a bar calls it first), and ``_update_metrics``, which shows
   ``get_metrics`` in that column. The step bar has its own ``on_train_start`` (one bar over the
   whole run, in steps) and ``on_train_batch_end`` (redrawn at a bounded rate, not every step), so
   it calls them itself (:func:`start_rich_progress`, :func:`show_rich_metrics`); no public method
   does either.
"""

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher


def without_per_step_sigterm_broadcast(trainer: L.Trainer) -> None:
    """Stop ``trainer``'s training loop from broadcasting and reading back a SIGTERM flag every step."""
    trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor = lambda: None


def relaunches_the_command(trainer: L.Trainer) -> bool:
    """Whether fitting with ``trainer`` would start DDP processes by re-running this command
    (outside a cluster environment that starts them, such as SLURM's or torchrun's)."""
    return isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher) and not (
        trainer.strategy.cluster_environment.creates_processes_externally
    )


class SLURMEnvironmentForAnyTasks(SLURMEnvironment):
    """Lightning's SLURMEnvironment without its check of ``--ntasks`` against ``--ntasks-per-node``
    at construction (item 3 above); whoever uses it checks the tasks per node itself."""

    @staticmethod
    def _validate_srun_variables() -> None:
        pass


def skip_backward(trainer: L.Trainer, skip: bool) -> None:
    """Make ``trainer``'s automatic optimisation leave out zeroing the gradients and the backward
    pass, with their hooks, or do them again (item 4 above): the training step and the optimizer
    step remain."""
    trainer.fit_loop._skip_backward = skip


def start_rich_progress(bar: RichProgressBar, trainer: L.Trainer) -> None:
    """Start ``bar``'s Rich display where it is enabled and not running yet (item 5 above)."""
    bar._init_progress(trainer)


def show_rich_metrics(bar: RichProgressBar, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Show ``bar.get_metrics(...)`` in the display's metrics column (item 5 above)."""
    bar._update_metrics(trainer, pl_module)
