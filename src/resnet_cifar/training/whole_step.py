"""A whole SGD training step as one function, for ``torch.compile`` to turn into one graph.

Augmentation, forward, backward, the SGD update and the BN statistics' update are written as one
pure tensor function (``torch.func.grad_and_value`` gives the gradients inside it, the optimizer's
own functional ``torch.optim.sgd.sgd`` applies them), so that compiling it leaves no Python
between the kernels of a step: on a GPU with CUDA graphs a step is one graph replay, and the host
only launches it. The learning rate enters as a device tensor, refreshed when the scheduler
changes it. Parameters, BN buffers and momentum buffers are the network's and the optimizer's own
tensors, updated in place, so checkpoints, resume and everything that reads them are unchanged.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value
from torch.optim.sgd import SGD, sgd

from resnet_cifar.errors import ConfigError
from resnet_cifar.training.torch_compat import mark_static_address

InputTransform = Callable[..., torch.Tensor]  # (uint8 images, *augmentation parameters) -> input
# SGD's settings besides the learning rate, read from its parameter group.
SGD_SETTINGS = ("weight_decay", "momentum", "dampening", "nesterov", "maximize")


class StepResult(NamedTuple):
    loss: torch.Tensor  # the batch's mean cross-entropy, before the update
    logits: torch.Tensor  # the network's output for the batch, before the update (no autograd graph)
    error: torch.Tensor  # the batch's top-1 error (%), before the update


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Refuse what the functional SGD update would not reproduce exactly."""
    if type(optimizer) is not SGD:
        raise ConfigError(
            f"module=whole_step compiles the SGD update into the step, but the optimizer is "
            f"{type(optimizer).__name__}; use optimizer=sgd, or module=classifier"
        )
    if len(optimizer.param_groups) != 1:
        raise ConfigError("module=whole_step supports one SGD parameter group; use module=classifier")


class WholeTrainingStep:
    """``step(images, crop_flip, labels)``: one SGD step of ``net`` on a raw training batch.

    ``prepare_inputs`` turns the raw batch into the network's input (the data module's
    augmentation and normalisation); ``channels_last`` is the network's memory format. The
    function itself is :meth:`run`, which the caller compiles (``WholeStepClassifier``, the bench).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: SGD,
        prepare_inputs: InputTransform,
        channels_last: bool,
    ) -> None:
        check_optimizer(optimizer)
        self.net = net
        self.optimizer = optimizer
        self.prepare_inputs = prepare_inputs
        self.channels_last = channels_last
        self.names = [name for name, p in net.named_parameters() if p.requires_grad]
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.buffers = dict(net.named_buffers())
        self._state_source: dict | None = None  # the optimizer.state its buffers were taken from
        self.momentum_buffers: list[torch.Tensor | None] = []
        self.lr = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        self._lr_value: float | None = None
        # Plain values, not the optimizer: a compiled graph that read the optimizer would be
        # guarded on its whole parameter group, learning rate included, and compiled again at
        # every change of it.
        self.settings: dict[str, float | bool] = {}

    def sync_with_optimizer(self) -> None:
        """Take the optimizer's current learning rate and momentum buffers.

        The learning rate is copied into the device tensor only when the scheduler changed it.
        Momentum buffers that SGD has not created yet are created as zeros, which gives the same
        first update (``0.9 * 0 + g == g``) and tensors that exist before the first step, as a
        compiled graph needs; after ``load_state_dict`` (a resume) the optimizer holds a new state
        dict and its buffers are taken again.
        """
        group = self.optimizer.param_groups[0]
        if group["lr"] != self._lr_value:
            self._lr_value = group["lr"]
            self.lr.fill_(self._lr_value)
        settings = {key: group[key] for key in SGD_SETTINGS}
        if settings != self.settings:  # a scheduler may cycle momentum: compiled again, rarely
            self.settings = settings
        if self.optimizer.state is not self._state_source:
            self._state_source = self.optimizer.state
            self.momentum_buffers = (
                [self._momentum_buffer(p) for p in self.params] if group["momentum"] else [None for _ in self.params]
            )
            for tensor in [*self.params, *self.buffers.values(), self.lr, *self.momentum_buffers]:
                if tensor is not None:
                    # Same memory at every call: CUDA graphs then update these tensors in place
                    # instead of copying them in and out of the graph's own memory.
                    mark_static_address(tensor)

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor a step changes: weights, BN buffers, momentum buffers."""
        return [*self.params, *self.buffers.values(), *(b for b in self.momentum_buffers if b is not None)]

    def _momentum_buffer(self, param: torch.Tensor) -> torch.Tensor:
        state = self.optimizer.state[param]
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state["momentum_buffer"]

    def run(self, images: torch.Tensor, crop_flip: tuple[torch.Tensor, ...], labels: torch.Tensor) -> StepResult:
        """The step itself: pure tensor code, no host synchronisation, no Python-side state."""
        inputs = self.prepare_inputs(images, crop_flip)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        gradients, (loss, logits) = grad_and_value(self._loss, has_aux=True)(
            dict(zip(self.names, self.params)), self.buffers, inputs, labels
        )
        with torch.no_grad():
            gradients = [gradients[name] for name in self.names]
            sgd(self.params, gradients, self.momentum_buffers, foreach=True, lr=self.lr, **self.settings)
        error = (logits.argmax(1) != labels).sum() * (100 / len(labels))
        return StepResult(loss.detach(), logits, error)

    def _loss(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        inputs: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The buffers are an argument, not captured: BN updates its running statistics in place,
        # which grad transforms allow only on their function's inputs.
        logits = functional_call(self.net, (params, buffers), (inputs,))
        loss = F.cross_entropy(logits, labels)
        return loss, logits.detach()  # the loss to differentiate, and the logits as "aux"
