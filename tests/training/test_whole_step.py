"""model.compile_scope=step: the whole training step compiled as one unit computes what the
uncompiled step computes, falls back like the network's compile, resumes bit for bit, and refuses
what it cannot do."""

import pytest
import torch
from small_fits import assert_same_state, compile_with, failing_backend, trained_state

from resnet_cifar.training.module import CompileFallbackWarning

WHOLE_STEP = {"compile": True, "compile_scope": "step"}


def test_the_whole_step_computes_exactly_what_the_uncompiled_step_does(monkeypatch, tmp_path):
    # With torch.compile returning the step function itself, the run goes through everything the
    # compiled whole step does (raw batches, the functional gradients, SGD update and BN
    # statistics, the learning rate tensor, zero-initialised momentum, the optimizer's closure,
    # the trial steps of both batch shapes) without a compiler's rounding: bit for bit equal.
    # (Dynamo's "eager" backend is not: its trace of the gradient transform rounds a few weights
    # differently in the last bit.)
    uncompiled = trained_state(tmp_path / "eager")
    monkeypatch.setattr(torch, "compile", lambda function, **options: function)
    whole_step = trained_state(tmp_path / "whole_step", **WHOLE_STEP)
    assert_same_state(whole_step, uncompiled)


def max_difference(ours: tuple[dict, dict], theirs: tuple[dict, dict]) -> float:
    """The largest absolute difference of any weight, BN statistic or momentum buffer."""
    (net, optimizer), (other_net, other_optimizer) = ours, theirs
    differences = [(net[key].double() - other_net[key].double()).abs().max() for key in net]
    differences += [
        (state["momentum_buffer"] - other_optimizer["state"][index]["momentum_buffer"]).abs().max()
        for index, state in optimizer["state"].items()
    ]
    return float(max(differences))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_the_compiled_whole_step_equals_the_uncompiled_step_within_float_tolerance(precision, recwarn, tmp_path):
    # Inductor fuses and reorders the arithmetic: equal up to rounding, which nine steps at lr 0.1
    # amplify (a ReLU input within rounding of zero can land on either side). The yardstick is
    # what rounding alone does: the uncompiled run in the other memory format (NCHW), which
    # computes the same in another order. A wrong update is off by orders of magnitude more.
    uncompiled = trained_state(tmp_path / "eager", precision=precision)
    rounding = max_difference(trained_state(tmp_path / "nchw", precision=precision, channels_last=False), uncompiled)
    torch._dynamo.reset()
    whole_step = trained_state(tmp_path / "whole_step", precision=precision, **WHOLE_STEP)
    assert not [w for w in recwarn if issubclass(w.category, CompileFallbackWarning)]
    assert whole_step[1]["param_groups"] == uncompiled[1]["param_groups"]
    assert whole_step[0]["bn.num_batches_tracked"] == uncompiled[0]["bn.num_batches_tracked"] == 9
    difference = max_difference(whole_step, uncompiled)
    print(f"{precision}: compiled whole step vs uncompiled {difference:.2e}, NCHW vs NHWC {rounding:.2e}")
    assert 0 < rounding and difference < 10 * rounding
