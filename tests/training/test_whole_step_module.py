"""module=whole_step from the command line: resume, TensorBoard's input grid, evaluate."""

import torch
from small_fits import assert_same_state

from conftest import TINY_SYNTHETIC_RUN, assert_ok, logged_input_grids, read_json

WHOLE_STEP = ("module=whole_step",)


def test_a_resumed_whole_step_run_ends_bit_identical_to_an_uninterrupted_one(run_cli, tmp_path):
    # 450 training images in batches of 32: 15 steps an epoch, the last a batch of 2 (a second
    # compiled shape). The run's checkpoint of step 10, mid-epoch, resumed in a new process, which
    # compiles again: the same weights, BN statistics and momentum as the run that went through.
    run = (*TINY_SYNTHETIC_RUN, "data.synthetic_sizes=[500,100]", *WHOLE_STEP, "seed=0")
    uninterrupted, continued = tmp_path / "uninterrupted", tmp_path / "continued"
    every_10_steps = (
        "+callbacks.every_10_steps._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.every_10_steps.dirpath={tmp_path / 'every_10_steps'}",
        "+callbacks.every_10_steps.filename='step{step}'",
        "+callbacks.every_10_steps.auto_insert_metric_name=false",
        "+callbacks.every_10_steps.every_n_train_steps=10",
        "+callbacks.every_10_steps.save_top_k=-1",
    )
    straight = assert_ok(
        run_cli("train", *run, *every_10_steps, "trainer.max_steps=20", f"hydra.run.dir={uninterrupted}", cwd=tmp_path)
    )
    assert "CompileFallbackWarning" not in straight.output
    step10 = tmp_path / "every_10_steps" / "step10.ckpt"
    resumed = assert_ok(
        run_cli(
            "train", *run, "trainer.max_steps=20", f"ckpt_path={step10}", f"hydra.run.dir={continued}", cwd=tmp_path
        )
    )
    assert "resuming from" in resumed.output and "(step 10)" in resumed.output
    assert "CompileFallbackWarning" not in resumed.output
    ours, theirs = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (continued, uninterrupted))
    assert ours["global_step"] == theirs["global_step"] == 20
    assert_same_state(
        (ours["state_dict"], ours["optimizer_states"][0]), (theirs["state_dict"], theirs["optimizer_states"][0])
    )
    assert read_json(continued / "metrics.json")["test_err"] == read_json(uninterrupted / "metrics.json")["test_err"]


def test_a_whole_step_run_shows_its_inputs_resumes_uncompiled_and_evaluates(run_cli, tmp_path):
    # The input grid in TensorBoard is what the step augments inside its graph: the same image
    # as an uncompiled run's. The checkpoint holds the usual state: an uncompiled run resumes
    # from it, and evaluate reads it.
    run = (*TINY_SYNTHETIC_RUN, "seed=0", "trainer.max_steps=6")
    whole_step, uncompiled, resumed = tmp_path / "whole_step", tmp_path / "uncompiled", tmp_path / "resumed"
    assert_ok(run_cli("train", *run, *WHOLE_STEP, f"hydra.run.dir={whole_step}", cwd=tmp_path))
    assert_ok(run_cli("train", *run, f"hydra.run.dir={uncompiled}", cwd=tmp_path))
    (ours,), (theirs,) = logged_input_grids(whole_step), logged_input_grids(uncompiled)
    assert ours.tobytes() == theirs.tobytes()

    checkpoint = whole_step / "checkpoints" / "last.ckpt"
    assert_ok(
        run_cli(
            "train",
            *TINY_SYNTHETIC_RUN,
            "seed=0",
            "trainer.max_steps=10",
            f"ckpt_path={checkpoint}",
            f"hydra.run.dir={resumed}",
            cwd=tmp_path,
        )
    )
    assert (read_json(resumed / "metrics.json")["steps"], read_json(resumed / "metrics.json")["resumed_from"]) == (
        10,
        6,
    )

    evaluated = assert_ok(run_cli("evaluate", f"ckpt_path={checkpoint}", cwd=tmp_path))
    test_err = read_json(whole_step / "metrics.json")["test_err"]
    assert f"test error {test_err:.2f} %" in evaluated.stdout
