"""Speed options change how fast, never what: device placement, channels-last, compile, the bench."""

import copy
import re
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from conftest import REPO, run_command
from resnet_cifar.data import CIFARDataModule
from resnet_cifar.data.batches import BatchPlan, EpochBatchSampler, ImageBatches, shard_bounds
from resnet_cifar.models import cifar_resnet
from resnet_cifar.training.module import CompileFallbackWarning, ImageClassifier
from small_fits import (
    assert_same_state, attach_trainer, classifier, compile_with, constant, failing_backend, sgd, small_datamodule,
    tiny_fit, trained_state,
)


# --- device-resident data ---------------------------------------------------------------------


def set_up_for(root_device: torch.device) -> CIFARDataModule:
    """A small data module set up for fitting with a trainer on ``root_device``."""
    datamodule = small_datamodule()
    attach_trainer(datamodule, root_device)
    datamodule.setup("fit")
    return datamodule


def data_devices(datamodule: CIFARDataModule) -> set[str]:
    """Where the images and labels of the training, validation and test sets are."""
    sets = (datamodule.train_set, datamodule.val_set, datamodule.test_set)
    return {tensor.device.type for images in sets for tensor in (images.images, images.labels)}


def test_images_stay_on_the_cpu_when_training_on_the_cpu():
    datamodule = set_up_for(torch.device("cpu"))
    assert data_devices(datamodule) == {"cpu"}
    assert datamodule.train_dataloader().sampler.device == torch.device("cpu")


def test_images_move_once_to_the_trainers_root_device():
    # "meta" stands in for a GPU here: a device other than the CPU, without the hardware.
    datamodule = set_up_for(torch.device("meta"))
    assert data_devices(datamodule) == {"meta"}
    assert datamodule.mean_image.device.type == "cpu"  # the same mean whatever the device
    loader = datamodule.train_dataloader()
    assert loader.sampler.device.type == "meta"
    plan = next(iter(loader.sampler))  # the epoch's order and augmentation live there too
    assert plan.indices.device.type == "meta" and plan.crop_flip.top.device.type == "meta"
    batch = datamodule.train_set[plan]
    assert batch["images"].shape == (32, 3, 32, 32) and batch["images"].device.type == "meta"


def test_cpu_index_tensors_are_moved_to_the_images_device():
    images = ImageBatches(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10)).to("meta")
    batch = images[BatchPlan(torch.tensor([1, 3, 5]), None)]
    assert batch["images"].device.type == "meta" and batch["labels"].shape == (3,)


@pytest.mark.parametrize("num_items,batch_size", [(1000, 128), (45000, 128), (7, 4), (5, 8)])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 8])
def test_shards_are_the_tensor_split_of_each_global_batch(num_items, batch_size, world_size):
    for start in range(0, num_items, batch_size):
        stop = min(start + batch_size, num_items)
        for rank, part in enumerate(torch.arange(start, stop).tensor_split(world_size)):
            low, high = shard_bounds(start, stop, rank, world_size)
            assert torch.equal(torch.arange(low, high), part)


def test_sampler_plans_do_not_depend_on_the_device():
    cpu = EpochBatchSampler(500, 64, shuffle=True, seed=3, augment_padding=4, rank=1, world_size=2)
    meta = EpochBatchSampler(500, 64, shuffle=True, seed=3, augment_padding=4, rank=1, world_size=2, device="meta")
    for ours, theirs in zip(cpu, meta):
        assert ours.indices.shape == theirs.indices.shape and theirs.indices.device.type == "meta"
    # Same values: the draws happen on the CPU before the move ("meta" holds no values to compare).
    plans = list(EpochBatchSampler(500, 64, shuffle=True, seed=3, augment_padding=4, rank=1, world_size=2, device="cpu"))
    assert all(torch.equal(a.indices, b.indices) for a, b in zip(cpu, plans))


# --- channels-last ----------------------------------------------------------------------------


def test_channels_last_gives_the_same_logits_and_gradients():
    torch.manual_seed(0)
    net = cifar_resnet(8, "A", True, 10)
    plain = classifier(copy.deepcopy(net), channels_last=False)
    nhwc = classifier(copy.deepcopy(net), channels_last=True)
    plain.prepare_network(torch.device("cpu"))
    nhwc.prepare_network(torch.device("cpu"))
    assert not plain.uses_channels_last and nhwc.uses_channels_last
    assert nhwc.net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(16, 3, 32, 32)
    torch.testing.assert_close(nhwc(images), plain(images), rtol=1e-4, atol=1e-5)  # batch statistics
    for module in (plain, nhwc):
        module.eval()
    torch.testing.assert_close(nhwc(images), plain(images), rtol=1e-4, atol=1e-5)  # running statistics
    # The state dict is the plain network's, whatever the memory format.
    assert nhwc.state_dict().keys() == plain.state_dict().keys()


def test_channels_last_gives_the_same_gradients():
    # In float64: in float32 a pre-activation within rounding of zero may land on the other side
    # of a ReLU in one memory format, which moves a BN bias gradient by ~1e-3 relative (seen).
    torch.manual_seed(0)
    net = cifar_resnet(8, "A", True, 10).double()
    modules = [classifier(copy.deepcopy(net), channels_last=flag) for flag in (False, True)]
    images, labels = torch.randn(16, 3, 32, 32, dtype=torch.float64), torch.arange(16) % 10
    for module in modules:
        module.prepare_network(torch.device("cpu"))
        torch.nn.functional.cross_entropy(module(images), labels).backward()
    for plain, nhwc in zip(*(module.net.parameters() for module in modules)):
        torch.testing.assert_close(nhwc.grad, plain.grad, rtol=1e-9, atol=1e-12)


# --- the training step -------------------------------------------------------------------------


def test_train_error_is_the_error_over_all_the_epochs_training_images(tmp_path):
    class Record(L.Callback):
        def __init__(self) -> None:
            self.errors, self.sizes = [], []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.errors.append(float(outputs["err"]))
            self.sizes.append(len(batch[1]))

    record = Record()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[record], default_root_dir=tmp_path,
    )
    trainer.fit(classifier(), datamodule=small_datamodule())
    assert record.sizes == [32] * 7 + [26]  # 250 training images, the last batch smaller
    expected = sum(e * n for e, n in zip(record.errors, record.sizes)) / sum(record.sizes)
    assert float(trainer.callback_metrics["train/err"]) == pytest.approx(expected, abs=1e-4)


class LogsEveryStep(ImageClassifier):
    """The module as it was: ``self.log`` of the loss at every step."""

    def _loss_is_written_now(self) -> bool:
        return True


def logged_losses(module: ImageClassifier, tmp_path: Path, steps: int, every: int) -> tuple[list[tuple[int, str]], float]:
    """(step, train/loss) rows the logger wrote, and the final train/loss that metrics.json takes."""
    from lightning.pytorch.loggers import CSVLogger

    from resnet_cifar.training.callbacks import FinishAtMaxSteps

    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, log_every_n_steps=every, logger=CSVLogger(tmp_path, name="", version=""),
        callbacks=[FinishAtMaxSteps(tmp_path / "last.ckpt")], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=small_datamodule())
    rows = [line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines()]
    column = rows[0].index("train/loss")
    return [(int(row[rows[0].index("step")]), row[column]) for row in rows[1:] if row[column]], float(trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("steps,every", [(7, 3), (6, 2), (3, 50)])
def test_the_loss_is_logged_at_the_same_steps_as_when_logged_every_step(steps, every, tmp_path):
    # The loss reaches Lightning only at the steps its logger writes and at the last one.
    torch.manual_seed(0)
    net = cifar_resnet(8, "A", True, 10)
    ours = logged_losses(classifier(copy.deepcopy(net)), tmp_path / "ours", steps, every)
    every_step = logged_losses(LogsEveryStep(copy.deepcopy(net), sgd, constant), tmp_path / "every_step", steps, every)
    assert ours == every_step and len(ours[0]) >= 1


class AutomaticallyOptimised(ImageClassifier):
    """The module as it optimised before: Lightning's automatic optimisation steps on the
    training step's loss (and the scheduler, by its "interval": "step")."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = True

    def _optimize(self, loss: torch.Tensor) -> None:
        pass


def fit_with_last_checkpoint(module: ImageClassifier, tmp_path: Path, steps: int, ckpt_path: Path | None = None) -> L.Trainer:
    """As train.py: checkpoints/last.ckpt written at the last step, from which a run resumes."""
    from resnet_cifar.training.callbacks import FinishAtMaxSteps

    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
        callbacks=[FinishAtMaxSteps(tmp_path / "last.ckpt")],
    )
    trainer.fit(module, datamodule=small_datamodule(), ckpt_path=ckpt_path, weights_only=True)
    return trainer


def test_a_checkpoint_of_automatic_optimisation_resumes_at_its_step(tmp_path):
    # A run interrupted before the module optimised manually resumes where it stopped, and ends
    # as a run of the manual module that went through in one go.
    def milestones(optimizer):
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [4], 0.1)

    torch.manual_seed(0)
    net = cifar_resnet(8, "A", True, 10)
    fit_with_last_checkpoint(AutomaticallyOptimised(copy.deepcopy(net), sgd, milestones), tmp_path / "old", steps=3)
    resumed = ImageClassifier(copy.deepcopy(net), sgd, milestones)
    trainer = fit_with_last_checkpoint(resumed, tmp_path / "resumed", steps=5, ckpt_path=tmp_path / "old" / "last.ckpt")
    assert trainer.global_step == 5 and trainer.lr_scheduler_configs[0].scheduler.last_epoch == 5
    straight = ImageClassifier(copy.deepcopy(net), sgd, milestones)
    other = fit_with_last_checkpoint(straight, tmp_path / "straight", steps=5)
    assert_same_state((resumed.net.state_dict(), trainer.optimizers[0].state_dict()),
                      (straight.net.state_dict(), other.optimizers[0].state_dict()))


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_and_evaluates(precision, tmp_path):
    # On the CPU Lightning runs 16-mixed as bf16-mixed (fp16 autocast is for GPUs); trainer=gpu
    # uses bf16-mixed.
    trainer = L.Trainer(
        accelerator="cpu", precision=precision, max_steps=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    module = classifier()
    datamodule = small_datamodule()
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3 and module.uses_channels_last
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    assert 0 <= results["test/err"] <= 100


# --- compile ----------------------------------------------------------------------------------


def test_compile_unavailable_warns_and_training_still_works(monkeypatch, tmp_path):
    def no_compile(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", no_compile)
    module = classifier(compile=True)
    with pytest.warns(CompileFallbackWarning, match="torch.compile is unavailable or failed.*Dynamo is not supported"):
        trainer = tiny_fit(module, tmp_path)
    assert trainer.global_step == 3 and not module._compiled


def test_compile_failing_at_the_first_call_falls_back_to_the_same_result(monkeypatch):
    calls = []

    def broken_compile(net, **kwargs):
        def compiled(images):
            calls.append(kwargs)
            raise RuntimeError("BackendCompilerFailed: no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(0)
    module = classifier(compile=True, channels_last=False).eval()
    module.prepare_network(torch.device("cpu"))
    images = torch.randn(4, 3, 32, 32)
    with pytest.warns(CompileFallbackWarning, match="no C\\+\\+ compiler"):
        logits = module(images)
    torch.testing.assert_close(logits, module.net(images))
    assert calls == [{"mode": "default", "dynamic": False}]  # the CPU's mode; CUDA graphs are for GPUs
    module(images)  # once fallen back, the compiled network is not tried again
    assert len(calls) == 1


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_compile_failing_in_the_first_step_falls_back_to_an_uncompiled_run(where, monkeypatch, tmp_path):
    uncompiled = trained_state(tmp_path / "eager")
    compile_with(monkeypatch, failing_backend(where))
    module_warnings = pytest.warns(CompileFallbackWarning, match=f"no Triton for the {where}")
    with module_warnings:
        fallen_back = trained_state(tmp_path / "compiled", compile=True)
    assert_same_state(fallen_back, uncompiled)


def test_the_trial_step_of_a_new_batch_shape_leaves_no_trace(monkeypatch, tmp_path):
    # Dynamo's "eager" backend computes exactly what the network does: a compiled run then equals
    # the uncompiled one bit for bit only if the trial steps (of batch 32 and of the short last
    # batch of 26) left the BN statistics, gradients and optimizer as they were.
    uncompiled = trained_state(tmp_path / "eager")
    compile_with(monkeypatch, "eager")
    compiled = trained_state(tmp_path / "compiled", compile=True)
    assert_same_state(compiled, uncompiled)


def compose_train(overrides, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_speed_options_reach_the_module_and_not_the_network(tmp_path):
    from resnet_cifar.training.build import build_module

    module = build_module(compose_train(["model.compile=true", "model.channels_last=false", "model.depth=8"], tmp_path))
    assert module.compile_network and not module.channels_last
    assert [p.shape for p in module.net.parameters()] == [p.shape for p in cifar_resnet(8, "A", True, 10).parameters()]
    default = compose_train([], tmp_path)
    assert default.model.compile is False and default.model.channels_last is True
    assert default.model.compile_mode is None


# --- the bench script -------------------------------------------------------------------------


def test_bench_prints_the_table_end_to_end(tmp_path):
    command = [
        sys.executable, str(REPO / "bench" / "throughput.py"), "--depths", "8", "--steps", "2", "--warmup", "1",
        "--batch-size", "16", "--synthetic-size", "400", "--workers", "1", "--json", str(tmp_path / "bench.json"),
    ]
    completed = run_command(command, tmp_path, timeout=240)
    assert completed.returncode == 0, completed.output
    table = completed.stdout
    for row in ("| 8 | project", "| 8 | bare", "| 8 | classic"):
        assert row in table, table
    assert "ResNet-8: project / classic = " in table and "ResNet-8: Lightning overhead (project vs bare) = " in table
    assert "peak RSS MiB" in table and (tmp_path / "bench.json").is_file()


def test_bench_reports_host_time_per_step(tmp_path):
    command = [
        sys.executable, str(REPO / "bench" / "throughput.py"), "--host-overhead", "--compile", "step", "--steps", "3",
        "--warmup", "2", "--repeats", "1", "--synthetic-size", "400",
    ]
    completed = run_command(command, tmp_path, timeout=240)
    assert completed.returncode == 0, completed.output
    assert "batch 8, 2 warm-up + 3 timed steps" in completed.stdout and "1 threads" in completed.stdout
    lines = [line for line in completed.stdout.splitlines() if line.startswith("host ms/step (ResNet-8, batch 8): ")]
    assert len(lines) == 2, completed.stdout  # the eager pair and the whole-step pair (--compile step)
    for line, (project, bare) in zip(lines, [("project", "bare"), ("project-step", "bare-step")]):
        ours, theirs, share = (float(re.search(pattern, line).group(1)) for pattern in (
            rf"{project} (\d+\.\d+)", rf"{bare} (\d+\.\d+)",
            rf"Lightning's share \({project} - {bare}\) = (-?\d+\.\d+) ms/step"))
        assert ours > 0 and theirs > 0 and share == pytest.approx(ours - theirs, abs=0.011), line
        assert re.search(r"in the fastest tenth of the steps -?\d+\.\d+ ms/step \(rounds: -?\d+\.\d+\)", line), line
        # The host time outside the work both pipelines do: positive, and the share is their difference.
        outside_ours, outside_theirs, outside_share = (float(re.search(pattern, line).group(1)) for pattern in (
            rf"outside the shared work {project} (\d+\.\d+)", rf"outside the shared work {project} [\d.]+, {bare} (\d+\.\d+)",
            r"share (-?\d+\.\d+) ms/step \(rounds: -?\d+\.\d+\);"))
        assert 0 < outside_theirs < theirs and 0 < outside_ours < ours, line
        assert outside_share == pytest.approx(outside_ours - outside_theirs, abs=0.0011), line
        assert re.search(rf"; page faults per step {project} \d+, {bare} \d+$", line), line
    assert "| 8 | project-step (NHWC) |" in completed.stdout and "compile fell back" not in completed.stdout
