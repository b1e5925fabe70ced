"""Whether a training step may call torch's backward and optimizer step without Lightning's layers.

In manual optimisation ``manual_backward`` and ``LightningOptimizer.step`` reach torch through the
strategy and the precision plugin. On one device without loss scaling, their only work besides
torch's is to dispatch ``on_before_backward``, ``on_after_backward`` and
``on_before_optimizer_step`` to the callbacks and the module (Lightning 2.6.6:
``Strategy.backward``; ``Precision.pre_backward``, ``backward``, ``post_backward`` and
``optimizer_step``; ``MixedPrecision`` without a scaler defers to them; gradient clipping is
refused in manual optimisation; the profiler's ``optimizer_step`` record is made by the step
count, which the direct step keeps). When none of those hooks is implemented, that work is
empty and costs about 0.15 ms of host time per step (docs/benchmarks.md, "Host time per step").
Everything else goes through Lightning: DDP and every other strategy, fp16 loss scaling, an
implemented hook, a module with its own ``backward``. tests/training/test_lean_update.py checks
that both ways train bit-identically and count the same steps, and which way each case takes.
"""

import lightning as L
from lightning.pytorch.plugins.precision import HalfPrecision, MixedPrecision, Precision
from lightning.pytorch.strategies import SingleDeviceStrategy

from resnet_cifar.training.hook_dispatch import implements

UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
PLAIN_PRECISIONS = (Precision, MixedPrecision, HalfPrecision)


def lightning_adds_nothing_to_the_update(trainer: L.Trainer, module: L.LightningModule) -> bool:
    """True where ``manual_backward`` and ``LightningOptimizer.step`` would only run torch's
    ``backward`` and the optimizer's ``step`` (decide once every callback is attached)."""
    precision = trainer.precision_plugin
    hooks_implemented = any(implements(callback, hook, L.Callback) for callback in trainer.callbacks for hook in UPDATE_HOOKS)
    hooks_implemented |= any(implements(module, hook, L.LightningModule) for hook in UPDATE_HOOKS)
    return (
        type(trainer.strategy) is SingleDeviceStrategy
        and type(precision) in PLAIN_PRECISIONS
        and getattr(precision, "scaler", None) is None
        and type(module).backward is L.LightningModule.backward
        and not hooks_implemented
    )
