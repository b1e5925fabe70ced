"""The Lightning internals of resnet_cifar.training.lightning_compat, and the behaviour the project
builds on, as read in Lightning 2.6.6: an upgrade of Lightning that changes one fails here."""

import inspect
import io

import lightning as L
import pytest
import torch
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

from probes import RecordBatchHooks
from resnet_cifar.training.lightning_compat import (
    relaunches_the_command,
    show_rich_metrics,
    skip_backward,
    start_rich_progress,
    without_per_step_sigterm_broadcast,
)
from small_fits import bare_trainer


def test_lightning_is_the_minor_version_that_was_read() -> None:
    assert L.__version__.startswith("2.6."), "read lightning_compat.py against the new version, then pin it"


def test_the_per_step_sigterm_broadcast_is_switched_off(tmp_path) -> None:
    # advance must call it by that name, at every step.
    assert "self._broadcast_sigterm_tensor()" in inspect.getsource(_TrainingEpochLoop.advance)
    trainer = L.Trainer(accelerator="cpu", default_root_dir=tmp_path, logger=False)
    without_per_step_sigterm_broadcast(trainer)
    assert trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor() is None
    assert L.Trainer(accelerator="cpu", logger=False).fit_loop.epoch_loop._broadcast_sigterm_tensor.__self__ is not None
    # The preemption callback installs its handlers in on_train_start, after Lightning registered
    # its own SIGTERM handler in Trainer._run.
    run = inspect.getsource(L.Trainer._run)
    assert run.index('"on_fit_start"') < run.index("register_signal_handlers()") < run.index("self._run_stage()")


@pytest.mark.parametrize(
    "environment,relaunches",
    [
        ({}, True),  # Lightning would start the second process by re-running the command
        (
            {
                "LOCAL_RANK": "0",
                "WORLD_SIZE": "2",
                "RANK": "0",
                "GROUP_RANK": "0",
                "LOCAL_WORLD_SIZE": "2",
                "TORCHELASTIC_RUN_ID": "x",
                "MASTER_ADDR": "localhost",
                "MASTER_PORT": "12345",
            },
            False,
        ),  # torchrun did
        (
            {
                "SLURM_NTASKS": "2",
                "SLURM_NTASKS_PER_NODE": "2",
                "SLURM_JOB_NAME": "train",
                "SLURM_PROCID": "0",
                "SLURM_LOCALID": "0",
                "SLURM_NODEID": "0",
                "SLURM_NODELIST": "localhost",
                "SLURM_JOB_ID": "1",
            },
            False,
        ),  # srun did
    ],
    ids=["plain", "torchrun", "slurm"],
)
def test_ddp_processes_relaunched_only_outside_a_cluster(environment, relaunches, monkeypatch) -> None:
    for name in ("LOCAL_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    trainer = L.Trainer(accelerator="cpu", strategy="ddp", devices=2, logger=False)
    assert relaunches_the_command(trainer) is relaunches
    assert relaunches_the_command(L.Trainer(accelerator="cpu", devices=1, logger=False)) is False


def test_slurms_check_of_ntasks_is_the_one_left_out(monkeypatch) -> None:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from resnet_cifar.training.lightning_compat import SLURMEnvironmentForAnyTasks

    # `salloc -n 2`, then `srun -n 2`: no SLURM_NTASKS_PER_NODE.
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE", raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert "self._validate_srun_variables()" in inspect.getsource(SLURMEnvironment.__init__)
    with pytest.raises(RuntimeError, match="--ntasks-per-node=2"):
        SLURMEnvironment()
    assert SLURMEnvironmentForAnyTasks(auto_requeue=False).auto_requeue is False


class RecordsHooksWithoutBackward(RecordBatchHooks):
    def on_train_start(self, trainer, pl_module) -> None:
        skip_backward(trainer, True)

    def on_before_zero_grad(self, *args) -> None:
        self.calls.append("on_before_zero_grad")


def test_skipping_backward_keeps_training_and_optimizer_step(tmp_path) -> None:
    from lightning.pytorch.demos.boring_classes import BoringModel

    recorder = RecordsHooksWithoutBackward(str(tmp_path))
    model = BoringModel()
    trainer = bare_trainer(tmp_path, max_steps=2, callbacks=[recorder])
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model)
    assert trainer.global_step == 2
    # No zero_grad, no backward, none of their hooks (the optimizer step and its hook remain).
    assert recorder.calls == ["on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end"] * 2
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "no gradients, so no update"


class ShowsOneMetric(L.pytorch.callbacks.RichProgressBar):
    def get_metrics(self, trainer, pl_module) -> dict[str, str]:
        return {"loss": "1.2500"}


def test_rich_progress_bar_methods_start_and_show_metrics(tmp_path) -> None:
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.demos.boring_classes import BoringModel
    from rich import reconfigure

    # RichProgressBar's own hooks do it through these two.
    assert "self._init_progress(trainer)" in inspect.getsource(RichProgressBar.on_train_start)
    assert "self._update_metrics(trainer, pl_module)" in inspect.getsource(RichProgressBar.on_train_batch_end)
    output = io.StringIO()
    bar = ShowsOneMetric(console_kwargs={"file": output, "force_terminal": True, "width": 80})
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[bar], default_root_dir=tmp_path)
    try:
        assert bar.progress is None
        start_rich_progress(bar, trainer)
        assert bar.progress is not None and bar.progress.live.is_started
        trainer.state.fn = "fit"  # the metrics column shows metrics beside the training bar only
        bar.train_progress_bar_id = bar.progress.add_task("step", total=4)
        show_rich_metrics(bar, trainer, BoringModel())
        bar.progress.update(bar.train_progress_bar_id, completed=2)
        bar.refresh()
    finally:
        if bar.progress is not None:
            bar.progress.stop()
        reconfigure()  # RichProgressBar configured Rich's global console for the bar's output
    assert "loss: 1.2500" in output.getvalue()
