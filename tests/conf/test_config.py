"""Every config group composes and instantiates; the paper's recipe is the default.

The configs are composed in this process with Hydra's compose API; only ``train --help`` runs the
command, as a process.
"""

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from commands import run_cli
from resnet_cifar import CONFIG_DIR
from resnet_cifar.data import CIFARDataModule
from resnet_cifar.train import compose_config
from resnet_cifar.training.build import build_module, build_trainer
from resnet_cifar.training.callbacks import LrWarmupUntilTrainError
from small_fits import bare_trainer

GROUP_OPTIONS = {
    "paths": ["default"],
    "model": ["resnet", "plain"],
    "module": ["classifier", "whole_step"],
    "data": ["cifar10", "cifar100", "synthetic"],
    "optimizer": ["sgd"],
    "scheduler": ["multistep", "plateau"],
    "trainer": ["default", "cpu", "gpu", "ddp"],
    "logger": ["tensorboard", "csv", "mlflow", "wandb", "many"],
    "callbacks": ["default"],
    "experiment": ["resnet110", "smoke"],
    "hparams_search": ["lr_wd"],
}


def test_every_group_option_is_on_disk():
    for group, options in GROUP_OPTIONS.items():
        assert sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")) == sorted(options), group


def test_default_config_is_the_papers_recipe():
    cfg = compose_config()
    assert (cfg.model.depth, cfg.model.shortcut, cfg.model.residual) == (20, "A", True)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.1, 0.9, 1e-4)
    assert list(cfg.scheduler.milestones) == [32000, 48000] and cfg.scheduler.gamma == 0.1
    assert cfg.trainer.max_steps == 64000
    assert (cfg.data.batch_size, cfg.data.val_size, cfg.data.padding) == (128, 5000, 4)


@pytest.mark.parametrize(
    "group,option", [(group, option) for group, options in GROUP_OPTIONS.items() for option in options]
)
def test_each_option_composes_and_instantiates(group, option, tmp_path):
    # logger=mlflow opens its store when built: one in tmp_path, not in the working directory's outputs/.
    store = f"site.mlflow_tracking_uri=sqlite:///{tmp_path}/mlflow.db"
    cfg = compose_config([f"{group}={option}", "trainer.accelerator=cpu", store], output_dir=tmp_path)
    module = build_module(cfg)
    assert module(torch.zeros(1, 3, 32, 32)).shape == (1, cfg.data.num_classes)
    assert isinstance(instantiate(cfg.data), CIFARDataModule)
    optimizers = module.configure_optimizers()
    scheduler = optimizers["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau))
    with open_dict(cfg):
        cfg.trainer.devices = 1  # ddp's two processes are started by the end-to-end tests
    trainer = build_trainer(cfg)
    assert isinstance(trainer, L.Trainer)
    assert trainer.max_steps == cfg.trainer.max_steps


def test_variants_and_data_sets_change_what_they_should():
    assert compose_config(["model=plain"]).model.residual is False
    cifar100 = compose_config(["data=cifar100"])
    assert (cifar100.data.dataset, cifar100.data.num_classes, cifar100.model.num_classes) == ("cifar100", 100, 100)
    assert compose_config(["trainer=gpu"]).trainer.precision == "bf16-mixed"
    ddp = compose_config(["trainer=ddp"])
    assert (ddp.trainer.strategy, ddp.trainer.devices) == ("ddp", 2)


def fake_cuda(monkeypatch, available: bool, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: available and bf16)


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp"])
@pytest.mark.parametrize(
    "accelerator,cuda,expected",
    [
        ("gpu", False, "bf16-mixed"),  # the composed config of a GPU job, wherever it is composed
        ("cuda", True, "bf16-mixed"),
        ("cpu", True, "32-true"),  # the CPU keeps fp32, GPUs or not
        ("auto", True, "bf16-mixed"),  # Lightning's "auto" picks the GPU where there is one
        ("auto", False, "32-true"),
    ],
)
def test_every_trainer_is_bf16_on_gpus_and_fp32_on_the_cpu(trainer, accelerator, cuda, expected, monkeypatch):
    fake_cuda(monkeypatch, available=cuda)
    cfg = compose_config([f"trainer={trainer}", f"trainer.accelerator={accelerator}"])
    assert cfg.trainer.precision == expected


def test_trainer_configs_pick_their_devices_precision(monkeypatch):
    """Without trainer.accelerator or trainer.precision on the command line."""
    fake_cuda(monkeypatch, available=True)
    assert compose_config(["trainer=ddp"]).trainer.precision == "bf16-mixed"  # DDP (and SLURM) jobs on GPUs
    assert compose_config(["trainer=gpu"]).trainer.precision == "bf16-mixed"
    assert compose_config(["trainer=cpu"]).trainer.precision == "32-true"
    fake_cuda(monkeypatch, available=False)
    assert compose_config(["trainer=ddp"]).trainer.precision == "32-true"  # 2 CPU processes (gloo)
    assert compose_config([]).trainer.precision == "32-true"


def test_gpus_without_native_bf16_train_in_fp16_mixed(monkeypatch):
    fake_cuda(monkeypatch, available=True, bf16=False)
    assert compose_config(["trainer=ddp"]).trainer.precision == "16-mixed"


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp"])
def test_an_explicit_precision_always_wins(trainer, monkeypatch):
    fake_cuda(monkeypatch, available=True)
    for precision in ("32-true", "16-mixed", "bf16-mixed"):
        assert compose_config([f"trainer={trainer}", f"trainer.precision={precision}"]).trainer.precision == precision


def test_resolved_precision_reaches_the_trainer(tmp_path):
    cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1"], output_dir=tmp_path)
    assert build_trainer(cfg).precision == "32-true"


def lr_at_steps(milestones, steps, lr=0.1):
    net = torch.nn.Linear(1, 1)
    cfg = compose_config([f"scheduler.milestones={milestones}", f"optimizer.lr={lr}"])
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    scheduler = instantiate(cfg.scheduler)(optimizer)
    seen = {}
    for step in range(max(steps) + 1):
        # The lr that optimizer step `step` (0-based) uses, then the per-step scheduler update.
        seen[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    return {step: seen[step] for step in steps}


def test_schedule_divides_by_ten_at_32k_and_48k_steps():
    lrs = lr_at_steps("[32000,48000]", [0, 31999, 32000, 47999, 48000, 63999])
    assert lrs[0] == pytest.approx(0.1) and lrs[31999] == pytest.approx(0.1)
    assert lrs[32000] == pytest.approx(0.01) and lrs[47999] == pytest.approx(0.01)
    assert lrs[48000] == pytest.approx(0.001) and lrs[63999] == pytest.approx(0.001)


def test_module_steps_its_scheduler_every_optimizer_step(tmp_path):
    cfg = compose_config(
        [
            "model.depth=8",
            "data=synthetic",
            "data.synthetic_sizes=[300,100]",
            "data.val_size=50",
            "data.batch_size=32",
            "scheduler.milestones=[2,3]",
        ],
        tmp_path,
    )
    module = build_module(cfg)
    trainer = bare_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(module, datamodule=instantiate(cfg.data))
    # Lightning steps it once per optimizer step (module.lr_scheduler.interval): lr 0.1, 0.1, 0.01, then 0.001.
    scheduler = trainer.lr_scheduler_configs[0]
    assert scheduler.scheduler.last_epoch == 3 and trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.001)
    assert (scheduler.interval, scheduler.name) == ("step", "lr")  # what LearningRateMonitor reads


def test_resnet110_experiment_adds_the_warmup(tmp_path):
    cfg = compose_config(["experiment=resnet110"], output_dir=tmp_path)
    assert cfg.model.depth == 110
    warmup = instantiate(cfg.callbacks.lr_warmup)
    assert isinstance(warmup, LrWarmupUntilTrainError)
    assert (warmup.factor, warmup.max_train_err) == (0.1, 80.0)
    # A depth typed on the command line still wins over the experiment's.
    assert compose_config(["experiment=resnet110", "model.depth=56"]).model.depth == 56


def test_help_lists_the_config_groups(tmp_path):
    result = run_cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for group, options in GROUP_OPTIONS.items():
        assert f"{group}:" in result.stdout
        for option in options:
            assert option in result.stdout


def test_job_dirname_is_short_and_the_same_for_same_overrides() -> None:
    from resnet_cifar.launch.job_names import MAX_NAME_BYTES, job_dirname

    assert job_dirname("model.depth=20,seed=0") == "model.depth=20,seed=0"
    assert job_dirname("data.root=/data/cifar,seed=1") == "data.root=_data_cifar,seed=1"
    long = [f"a={'x' * 300},seed={seed}" for seed in (0, 1)]
    names = [job_dirname(name) for name in long]
    assert all(len(name.encode()) <= MAX_NAME_BYTES and "/" not in name for name in names)
    assert names[0] != names[1] and names[0] == job_dirname(long[0])


def test_plateau_scheduler_steps_per_epoch_on_the_val_error(tmp_path):
    module = build_module(compose_config(["scheduler=plateau", "scheduler.patience=3"], output_dir=tmp_path))
    configured = module.configure_optimizers()["lr_scheduler"]
    assert isinstance(configured["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (configured["interval"], configured["monitor"], configured["scheduler"].patience) == ("epoch", "val/err", 3)


@pytest.mark.parametrize("scheduler", ["multistep", "plateau"])
def test_the_smoke_experiment_works_with_every_scheduler(scheduler, tmp_path):
    # The smoke run's short milestones are MultiStepLR's; given to ReduceLROnPlateau they were a
    # TypeError in configure_optimizers.
    cfg = compose_config(["experiment=smoke", f"scheduler={scheduler}"], output_dir=tmp_path)
    configured = build_module(cfg).configure_optimizers()["lr_scheduler"]
    if scheduler == "multistep":
        assert sorted(configured["scheduler"].milestones) == [10, 15]
        assert (configured["interval"], cfg.trainer.max_steps) == ("step", 20)
        # Without the experiment, the paper's; typed on the command line, the user's.
        assert list(compose_config().scheduler.milestones) == [32000, 48000]
        assert list(compose_config(["experiment=smoke", "scheduler.milestones=[3,4]"]).scheduler.milestones) == [3, 4]
    else:
        assert isinstance(configured["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
        assert "milestones" not in cfg.scheduler and configured["interval"] == "epoch"


def test_the_smoke_experiment_runs_where_the_command_line_says(tmp_path):
    """On the CPU by default, but a trainer chosen on the command line is not overridden unseen."""
    assert compose_config(["experiment=smoke"], output_dir=tmp_path).trainer.accelerator == "cpu"
    for order in (["experiment=smoke", "trainer=gpu"], ["trainer=gpu", "experiment=smoke"]):
        assert compose_config(order, output_dir=tmp_path).trainer.accelerator == "gpu"


def test_every_part_of_a_run_is_in_the_config(tmp_path):
    from resnet_cifar.training.callbacks import FinishAtMaxSteps, StopOnNonFiniteLoss, TrainingClock
    from resnet_cifar.training.checkpoint_io import RunCheckpointIO

    cfg = compose_config(["trainer.accelerator=cpu"], output_dir=tmp_path)
    trainer = build_trainer(cfg)
    kinds = {type(callback) for callback in trainer.callbacks}
    assert {FinishAtMaxSteps, StopOnNonFiniteLoss, TrainingClock} <= kinds
    assert isinstance(trainer.strategy.checkpoint_io, RunCheckpointIO)
    assert trainer.strategy.checkpoint_io.checkpoint_dir == (tmp_path / "checkpoints").resolve()
    checkpoint_dirs = {c.dirpath for c in trainer.checkpoint_callbacks}
    assert trainer.checkpoint_callback.monitor == "val/err", 'ckpt_path="best" means the best validation error'
    assert checkpoint_dirs == {str(tmp_path / "checkpoints")} == {cfg.paths.checkpoint_dir}
    assert (
        cfg.callbacks.preemption.checkpoint
        == cfg.callbacks.finish_at_max_steps.last_checkpoint
        == cfg.paths.last_checkpoint
    )
    removed = build_trainer(
        compose_config(["trainer.accelerator=cpu", "~callbacks.stop_on_non_finite_loss"], output_dir=tmp_path)
    )
    assert StopOnNonFiniteLoss not in {type(callback) for callback in removed.callbacks}
