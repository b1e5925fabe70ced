"""Every private torch internal the project uses, each with its reason. Read in torch 2.14.1.

An upgrade of torch must pass tests/training/test_torch_compat.py, which fails when one of them
changes, or when torch offers a public equivalent to use instead.

1. ``torch._dynamo.mark_static_address``: the whole step (``module=whole_step``,
   :mod:`resnet_cifar.training.whole_step`) takes the weights, BN buffers, momentum buffers and
   the learning rate as inputs of its compiled function and updates them in place; they keep
   their memory from call to call. Marked so, CUDA graphs (``reduce-overhead``) use that memory
   as it is instead of copying each of them into the graph's own memory and back at every
   replay. torch 2.14 has no public equivalent (``torch.compiler`` offers none); the mark is
   unguarded, so a tensor that does change its memory makes CUDA graphs record again rather than
   Dynamo compile again.
"""

import torch


def mark_static_address(tensor: torch.Tensor) -> None:
    """Tell torch.compile that ``tensor`` keeps its memory across calls (item 1 above)."""
    torch._dynamo.mark_static_address(tensor)
