"""A training step's hooks go only to the callbacks (and the LightningModule) that implement them.

Lightning calls each hook of a training step (``on_train_batch_start``, ``on_before_backward``,
...) on every callback and on the LightningModule, whether they implement it or inherit the empty
one: a profiler context, the callback's ``state_key`` (ModelCheckpoint's is a formatted dict), two
assignments of the module's ``_current_fx_name`` and the call, for each of about a dozen
callbacks, five times per step. On a GPU, where the host's time sets the step rate of a small
network, that is a measurable share of a step (docs/benchmarks.md, "Host time per step").
Lightning skips a hook attribute that is not callable (``_call_callback_hooks`` and
``_call_lightning_module_hook`` in ``lightning.pytorch.trainer.call``, 2.6.6), so the empty hooks
are set to ``None`` on the instances: every hook that is implemented is still called, at the same
time and with the same arguments. tests/training/test_hook_dispatch.py fails if an upgrade of
Lightning stops skipping them.

The profiler context around every hook that is called is Lightning's ``Profiler.profile``, a
generator-based context manager even when nothing profiles (about ten Python calls each, some
twenty times per step); :class:`NoProfiler`, the project's default profiler, hands out one
reusable empty context instead.
"""

import contextlib
from typing import Any

import lightning as L
from lightning.pytorch.profilers import PassThroughProfiler

# The hooks of a training step. Lightning calls them only through the two dispatch functions
# named above (unlike the evaluation loops' batch hooks, whose signatures it inspects at the start of
# each evaluation: those are left as they are).
TRAINING_STEP_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_zero_grad",
    "on_before_optimizer_step",
    "on_train_batch_end",
)


def implements(hook_owner: Any, hook: str, base: type) -> bool:
    """Whether calling ``hook`` on ``hook_owner`` (a callback or LightningModule) does anything:
    it is callable and not the empty method inherited from ``base``."""
    function = getattr(hook_owner, hook, None)
    return callable(function) and getattr(function, "__func__", None) is not getattr(base, hook)


def skip_empty_step_hooks(hook_owner: Any, base: type) -> None:
    """Take each training-step hook that ``hook_owner`` inherits unchanged from ``base``
    (``Callback`` or ``LightningModule``) out of Lightning's dispatch."""
    for hook in TRAINING_STEP_HOOKS:
        if not implements(hook_owner, hook, base):
            setattr(hook_owner, hook, None)


class DispatchOnlyImplementedHooks(L.Callback):
    """At setup, once every callback is attached (``configure_callbacks`` included), takes the
    empty training-step hooks of all callbacks and of the LightningModule out of Lightning's
    dispatch."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for callback in trainer.callbacks:
            skip_empty_step_hooks(callback, L.Callback)
        skip_empty_step_hooks(pl_module, L.LightningModule)


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler (records nothing) with a ``profile`` context that costs one
    call: the same empty context every time, instead of a new generator-based one."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._nothing
