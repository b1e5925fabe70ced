"""Every bad setting gets one clear message (the problem and the fix) before any work: a network
that cannot be built, what a training module cannot do, a callback without its logger, a GPU
that is not there, an evaluation without a checkpoint; and the Python API raises the project's
own error, whose text is what the command prints after ``error: ``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet_cifar.errors import ConfigError, UsageError
from resnet_cifar.evaluate import compose_evaluation, evaluate
from tiny_runs import TWO_STEPS, evaluation_refusal, refusal, refused, run_training


def assert_no_results(run_dir: Path) -> None:
    """No checkpoint, no metrics.json and no DDP process's log in ``run_dir``."""
    assert not list(run_dir.rglob("*.ckpt")) and not (run_dir / "metrics.json").exists()
    assert not (run_dir / "train_rank1.log").exists(), "no DDP process may have started"


def test_depth_not_of_the_form_6n_plus_2(tmp_path: Path) -> None:
    message = refusal(tmp_path, "model.depth=21")
    assert "depth=21" in message and "6n+2" in message and "20, 32, 44, 56, 110" in message
    assert not (tmp_path / "run").exists(), "a refused run leaves nothing, not even its config"


def test_unknown_shortcut(tmp_path: Path) -> None:
    message = refusal(tmp_path, "model.shortcut=C")
    assert "'C'" in message and "A, B" in message


def test_batch_not_divisible_by_ddp_world_size_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "data.batch_size=127")
    for phrase in ("data.batch_size=127", "2 processes", "multiple of 2"):
        assert phrase in message, message
    assert_no_results(tmp_path / "run")


@pytest.mark.parametrize(
    "overrides,phrases",
    [
        (
            ("module=whole_step", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"),
            ("module=whole_step", "DDP (2 processes", "use module=classifier"),
        ),
        (
            ("module=whole_step", "optimizer._target_=torch.optim.Adam", "~optimizer.momentum"),
            ("the optimizer is Adam", "optimizer=sgd", "module=classifier"),
        ),
        (("module=whole_step", "trainer.gradient_clip_val=1.0"), ("gradient clipping", "use module=classifier")),
        (
            ("module=whole_step", "module.lr_scheduler.interval=epoch"),
            ("step every 1 epoch", "module.lr_scheduler.interval=step", "use module=classifier"),
        ),
        (("trainer.gradient_clip_algorithm=sideways",), ("gradient_clip_algorithm", "sideways")),
        (("~callbacks.training_clock",), ("callbacks.training_clock is required", "metrics.json")),
    ],
    ids=["ddp", "not-sgd", "clipping", "epoch-interval", "unknown-clip-algorithm", "required-callback"],
)
def test_what_a_run_cannot_do_is_refused_before_training(
    tmp_path: Path, overrides: tuple[str, ...], phrases: tuple[str, ...]
) -> None:
    message = refusal(tmp_path, *overrides)
    for phrase in phrases:
        assert phrase in message, message
    assert_no_results(tmp_path / "run")


@pytest.mark.parametrize(
    "overrides", [(), ("module.lr_scheduler.interval=step",)], ids=["as-configured", "stepped-every-step"]
)
def test_whole_step_with_plateau_names_ways_out_that_train(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    """ReduceLROnPlateau steps on val/err, which the whole step's per-step scheduling would ask for
    before any validation: no module.lr_scheduler setting helps, so the message names what does."""
    message = refusal(tmp_path, "module=whole_step", "module.compile=false", "scheduler=plateau", *overrides)
    for phrase in (
        "module=whole_step",
        "ReduceLROnPlateau (scheduler=plateau)",
        "module=classifier",
        "scheduler=multistep",
    ):
        assert phrase in message, message
    assert "module.lr_scheduler" not in message, "no setting of module.lr_scheduler makes it work"
    assert_no_results(tmp_path / "run")
    ways_out = (
        ("module=classifier", "scheduler=plateau"),
        ("module=whole_step", "module.compile=false", "scheduler=multistep"),
    )
    for number, way_out in enumerate(ways_out):
        assert run_training(tmp_path / f"way_out_{number}", *TWO_STEPS, *way_out)["steps"] == 2


def test_callbacks_that_need_a_logger_name_both_ways_out(tmp_path: Path) -> None:
    message = refusal(tmp_path, "~logger.tensorboard")
    assert message == (
        "callbacks.lr_monitor (LearningRateMonitor) writes through a logger, and this run has no logger; keep one "
        "(logger=tensorboard, the default, or e.g. logger=csv), or remove the callback too: '~callbacks.lr_monitor'"
    )
    assert not (tmp_path / "run").exists()
    # Both ways out train; the callbacks that draw in TensorBoard (input_preview, tensorboard_layout)
    # write nothing without it.
    run_training(tmp_path / "csv", *TWO_STEPS, "logger=csv", "~logger.tensorboard")
    assert "lr" in (tmp_path / "csv" / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert run_training(tmp_path / "none", *TWO_STEPS, "~logger.tensorboard", "~callbacks.lr_monitor")["steps"] == 2
    for run in ("csv", "none"):
        assert not list((tmp_path / run).glob("events.*")), "no TensorBoard file without TensorBoard"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is that of a machine without a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one(tmp_path: Path, finished_run: Path) -> None:
    # The smoke experiment trains on the CPU; a setting on the command line comes last.
    message = refusal(tmp_path, "trainer.accelerator=gpu")
    assert message.startswith("trainer.accelerator=gpu (trainer=gpu) asks for a GPU, and this machine has none that ")
    for phrase in ("torch can use", "trainer=cpu", "the default trainer (trainer.accelerator=auto)"):
        assert phrase in message, message
    assert not (tmp_path / "run").exists()
    assert evaluation_refusal(finished_run / "checkpoints" / "last.ckpt", "trainer=gpu") == message


@pytest.mark.parametrize("given", [(), ("ckpt_path=???",), ("ckpt_path=",)], ids=["left-out", "missing", "empty"])
def test_evaluate_without_a_checkpoint_names_the_key_and_the_command(given: tuple[str, ...]) -> None:
    message = refused(lambda: evaluate(compose_evaluation(given)))
    assert message.startswith("ckpt_path is not set: evaluate tests a trained network"), message
    assert "python -m resnet_cifar.evaluate ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt" in message


def test_the_python_api_raises_the_projects_own_error(tmp_path: Path, finished_run: Path) -> None:
    """train() and evaluate() raise the UsageError itself, with the command's message: not Hydra's
    InstantiationException around one raised while building, nor Lightning's exception (whose
    trace stays attached as the cause)."""
    with pytest.raises(ConfigError, match=r"^depth=21 is not of the form 6n\+2"):
        run_training(tmp_path / "run", *TWO_STEPS, "model.depth=21")
    clip = "trainer.gradient_clip_algorithm=sideways"
    checkpoint = f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}"
    for call in (
        lambda: run_training(tmp_path / "run", *TWO_STEPS, clip),
        lambda: evaluate(compose_evaluation([checkpoint, clip])),
    ):
        with pytest.raises(UsageError, match="^`gradient_clip_algorithm` sideways is invalid") as raised:
            call()
        assert raised.value.__cause__ is not None, "Lightning's trace, for whoever debugs"
