"""Lightning 2.6.6's per-step SIGTERM broadcast, taken out of this project's training loops.

Under DDP, Lightning 2.6.6 starts every training step (``_TrainingEpochLoop.advance``) with
``_broadcast_sigterm_tensor``: rank 0 broadcasts a 0/1 flag and every rank reads it back with
``.item()``. That is a collective and a host sync per step, which undoes the project's
sync-free training step (upstream: Lightning-AI/pytorch-lightning issue #21487, "SIGTERM
broadcast every step"; the broadcast came with PR #20825, and PR #21640 proposes
``broadcast_sigterm_every_n_steps``). Its counterpart, a broadcast inside Lightning's SIGTERM
handler, is replaced during training by :class:`resnet_cifar.launch.preemption.SaveAndStopOnSignal`,
which notes the signal and lets the processes agree on it every N steps.

The per-step broadcast is switched off on one trainer's loop only (an instance attribute that
shadows the method), so other trainers in the process keep Lightning's behaviour.
``tests/launch/test_preemption.py`` fails if a Lightning upgrade renames the method or stops
calling it from ``advance``.
"""

import lightning as L


def without_per_step_sigterm_broadcast(trainer: L.Trainer) -> None:
    """Stop ``trainer``'s training loop from broadcasting and reading back a SIGTERM flag every step."""
    trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor = lambda: None
