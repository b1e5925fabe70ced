"""module=whole_step in a whole run (trained in this process through the Python API): it resumes
bit for bit, shows its inputs in TensorBoard, and writes checkpoints that an uncompiled run and
evaluate read."""

from pathlib import Path

import pytest
import torch

from resnet_cifar.evaluate import compose_evaluation, evaluate
from run_outputs import logged_input_grids
from small_fits import assert_same_state
from tiny_runs import TINY_SYNTHETIC_RUN, captured_log, run_training

WHOLE_STEP = ("module=whole_step",)


@pytest.mark.slow
def test_resumed_whole_step_run_is_bit_identical(tmp_path: Path) -> None:
    # 450 training images in batches of 32: 15 steps an epoch, the last a batch of 2 (a second
    # compiled shape). The run's checkpoint of step 10, mid-epoch, resumed with a fresh compile:
    # the same weights, BN statistics and momentum as the run that went through.
    run = (*TINY_SYNTHETIC_RUN, "data.synthetic_sizes=[500,100]", *WHOLE_STEP, "seed=0", "trainer.max_steps=20")
    uninterrupted, continued = tmp_path / "uninterrupted", tmp_path / "continued"
    every_10_steps = (
        "+callbacks.every_10_steps._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.every_10_steps.dirpath={tmp_path / 'every_10_steps'}",
        "+callbacks.every_10_steps.filename='step{step}'",
        "+callbacks.every_10_steps.auto_insert_metric_name=false",
        "+callbacks.every_10_steps.every_n_train_steps=10",
        "+callbacks.every_10_steps.save_top_k=-1",
    )
    straight = run_training(uninterrupted, *run, *every_10_steps)
    torch._dynamo.reset()  # compile again, as a new process would
    step10 = tmp_path / "every_10_steps" / "step10.ckpt"
    with captured_log() as log:
        resumed = run_training(continued, *run, f"ckpt_path={step10}")
    assert any("resuming from" in message and "(step 10)" in message for message in log), log
    ours, theirs = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (continued, uninterrupted))
    assert ours["global_step"] == theirs["global_step"] == 20
    assert_same_state(
        (ours["state_dict"], ours["optimizer_states"][0]), (theirs["state_dict"], theirs["optimizer_states"][0])
    )
    assert resumed["test_err"] == straight["test_err"]


def test_whole_step_checkpoint_serves_every_other_reader(tmp_path: Path) -> None:
    # The input grid in TensorBoard is what the step augments inside its graph: the same image
    # as an uncompiled run's. The checkpoint holds the usual state: an uncompiled run resumes
    # from it, and evaluate reads it.
    run = (*TINY_SYNTHETIC_RUN, "seed=0", "trainer.max_steps=6")
    whole_step, uncompiled, resumed = tmp_path / "whole_step", tmp_path / "uncompiled", tmp_path / "resumed"
    metrics = run_training(whole_step, *run, *WHOLE_STEP)
    run_training(uncompiled, *run)
    (ours,), (theirs,) = logged_input_grids(whole_step), logged_input_grids(uncompiled)
    assert ours.tobytes() == theirs.tobytes()

    checkpoint = whole_step / "checkpoints" / "last.ckpt"
    continued = run_training(resumed, *TINY_SYNTHETIC_RUN, "seed=0", "trainer.max_steps=10", f"ckpt_path={checkpoint}")
    assert (continued["steps"], continued["resumed_from"]) == (10, 6)
    assert evaluate(compose_evaluation([f"ckpt_path={checkpoint}"]))["test_err"] == metrics["test_err"]
