"""The torch internals of resnet_cifar.training.torch_compat, as read in torch 2.14.1: an upgrade of
torch that changes one, or that offers a public equivalent, fails here."""

import inspect

import torch
import torch._dynamo.utils

from resnet_cifar.training.torch_compat import mark_static_address


def test_mark_static_address_makes_a_tensor_unguarded() -> None:
    assert list(inspect.signature(torch._dynamo.mark_static_address).parameters) == ["t", "guard"]
    tensor = torch.zeros(3)
    assert torch._dynamo.utils.get_static_address_type(tensor) is None
    mark_static_address(tensor)
    # Dynamo reads the mark when it builds a graph's inputs: unguarded, CUDA graphs record again
    # where a tensor's memory changed (guarded would compile again).
    assert torch._dynamo.utils.get_static_address_type(tensor) == "unguarded"
    # Still no public equivalent to use instead.
    assert not hasattr(torch.compiler, "mark_static_address"), "use torch.compiler.mark_static_address"


def test_compiled_function_updates_marked_tensors_in_place() -> None:
    # What the whole step does with its state tensors, on the eager backend (no compiler needed).
    weight, rate = torch.ones(4), torch.tensor(0.5)
    for tensor in (weight, rate):
        mark_static_address(tensor)
    address = weight.data_ptr()

    def step(weight: torch.Tensor, rate: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        weight.sub_(rate * gradient)
        return weight.sum()

    compiled = torch.compile(step, backend="eager", fullgraph=True)
    for _ in range(2):
        compiled(weight, rate, torch.ones(4))
    assert weight.data_ptr() == address and torch.equal(weight, torch.zeros(4))
