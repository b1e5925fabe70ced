"""Speed options change how fast, never what: device placement, channels-last, compile, the bench."""

import copy
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from commands import REPO, run_command
from resnet_cifar.data import CIFARDataModule
from resnet_cifar.data.batches import BatchPlan, EpochBatchSampler, ImageBatches, shard_bounds
from resnet_cifar.models import cifar_resnet
from resnet_cifar.train import compose_config
from resnet_cifar.training.compiling import CompileFallbackWarning
from small_fits import (
    assert_same_state,
    bare_trainer,
    classifier,
    compile_with,
    failing_backend,
    small_datamodule,
    tiny_fit,
    trained_state,
)

# --- device-resident data ---------------------------------------------------------------------


def set_up_for(root_device: torch.device) -> CIFARDataModule:
    """A small data module set up for fitting with a trainer on ``root_device``."""
    datamodule = small_datamodule()
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=1, strategy=SimpleNamespace(root_device=root_device))
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
    plans = list(
        EpochBatchSampler(500, 64, shuffle=True, seed=3, augment_padding=4, rank=1, world_size=2, device="cpu")
    )
    assert all(torch.equal(a.indices, b.indices) for a, b in zip(cpu, plans))


# --- channels-last ----------------------------------------------------------------------------


def test_channels_last_gives_the_same_logits_and_gradients():
    torch.manual_seed(0)
    net = cifar_resnet(8, "A", True, 10)
    plain = classifier(net=copy.deepcopy(net), channels_last=False)
    nhwc = classifier(net=copy.deepcopy(net), channels_last=True)
    plain.prepare_network(torch.device("cpu"))
    nhwc.prepare_network(torch.device("cpu"))
    assert not plain.net.conv.weight.is_contiguous(memory_format=torch.channels_last)
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
    modules = [classifier(net=copy.deepcopy(net), channels_last=flag) for flag in (False, True)]
    images, labels = torch.randn(16, 3, 32, 32, dtype=torch.float64), torch.arange(16) % 10
    for module in modules:
        module.prepare_network(torch.device("cpu"))
        torch.nn.functional.cross_entropy(module(images), labels).backward()
    for plain, nhwc in zip(*(module.net.parameters() for module in modules)):
        torch.testing.assert_close(nhwc.grad, plain.grad, rtol=1e-9, atol=1e-12)


# --- the training step -------------------------------------------------------------------------


def test_train_error_is_over_all_the_epochs_images(tmp_path):
    class Record(L.Callback):
        def __init__(self) -> None:
            self.errors, self.sizes = [], []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.errors.append(float(outputs["err"]))
            self.sizes.append(len(batch[1]))

    record = Record()
    trainer = bare_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[record])
    trainer.fit(classifier(), datamodule=small_datamodule())
    assert record.sizes == [32] * 7 + [26]  # 250 training images, the last batch smaller
    expected = sum(e * n for e, n in zip(record.errors, record.sizes)) / sum(record.sizes)
    assert float(trainer.callback_metrics["train/err"]) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_and_evaluates(precision, tmp_path):
    # On the CPU Lightning runs 16-mixed as bf16-mixed (fp16 autocast is for GPUs); trainer=gpu
    # uses bf16-mixed.
    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    module = classifier()
    datamodule = small_datamodule()
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3 and module.net.conv.weight.is_contiguous(memory_format=torch.channels_last)
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
    assert trainer.global_step == 3 and module.compiled_net.compiled is None


def test_compile_failing_at_first_call_falls_back_same_result(monkeypatch):
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


def test_compile_failing_in_first_step_falls_back_uncompiled(monkeypatch, tmp_path):
    uncompiled = trained_state(tmp_path / "eager")
    compile_with(monkeypatch, failing_backend("forward"))
    with pytest.warns(CompileFallbackWarning, match="no Triton for the forward"):
        fallen_back = trained_state(tmp_path / "compiled", compile=True)
    assert_same_state(fallen_back, uncompiled)


def test_network_compiled_exactly_trains_as_uncompiled(monkeypatch, tmp_path):
    uncompiled = trained_state(tmp_path / "eager")
    compile_with(monkeypatch, "aot_eager")  # Dynamo's trace through AOT autograd, no code generation
    compiled = trained_state(tmp_path / "compiled", compile=True)
    assert_same_state(compiled, uncompiled)


def test_speed_options_are_the_modules_model_is_the_network(tmp_path):
    from resnet_cifar.models import cifar_resnet
    from resnet_cifar.training.build import build_module

    module = build_module(
        compose_config(["module.compile=true", "module.channels_last=false", "model.depth=8"], output_dir=tmp_path)
    )
    assert module.hparams.compile and not module.hparams.channels_last
    assert [p.shape for p in module.net.parameters()] == [p.shape for p in cifar_resnet(8, "A", True, 10).parameters()]
    default = compose_config([], output_dir=tmp_path)
    assert "compile" not in default.model and default.module.compile is False and default.module.channels_last is True
    assert default.module.compile_mode is None


# --- the bench script -------------------------------------------------------------------------


def run_bench(tmp_path: Path, *arguments: str, timeout: float) -> subprocess.CompletedProcess:
    """bench/throughput.py with ``arguments``, as a user runs it; it must succeed."""
    completed = run_command([sys.executable, REPO / "bench" / "throughput.py", *arguments], tmp_path, timeout=timeout)
    assert completed.returncode == 0, completed.output
    return completed


@pytest.mark.slow
def test_bench_prints_the_table_end_to_end(tmp_path):
    arguments = ("--depths", "8", "--steps", "2", "--warmup", "1", "--batch-size", "16", "--synthetic-size", "400")
    completed = run_bench(tmp_path, *arguments, "--workers", "1", "--json", str(tmp_path / "bench.json"), timeout=240)
    table = completed.stdout
    for row in ("| 8 | project", "| 8 | bare", "| 8 | classic"):
        assert row in table, table
    assert "ResNet-8: project / classic = " in table and "ResNet-8: Lightning overhead (project vs bare) = " in table
    assert "peak RSS MiB" in table and (tmp_path / "bench.json").is_file()


@pytest.mark.slow
def test_bench_reports_host_time_per_step(tmp_path):
    arguments = ("--host-overhead", "--compile", "step", "--steps", "3", "--warmup", "2", "--repeats", "1")
    completed = run_bench(tmp_path, *arguments, "--synthetic-size", "400", timeout=600)
    assert "batch 8, 2 warm-up + 3 timed steps" in completed.stdout and "1 threads" in completed.stdout
    lines = [line for line in completed.stdout.splitlines() if line.startswith("host ms/step (ResNet-8, batch 8): ")]
    assert len(lines) == 2, completed.stdout  # the eager pair and the whole-step pair (--compile step)
    for line, (project, bare) in zip(lines, [("project", "bare"), ("project-step", "bare-step")]):
        ours, theirs, share = (
            float(re.search(pattern, line).group(1))
            for pattern in (
                rf"{project} (\d+\.\d+)",
                rf"{bare} (\d+\.\d+)",
                rf"Lightning's share \({project} - {bare}\) = (-?\d+\.\d+) ms/step",
            )
        )
        assert ours > 0 and theirs > 0 and share == pytest.approx(ours - theirs, abs=0.011), line
        assert re.search(r"in the fastest tenth of the steps -?\d+\.\d+ ms/step \(rounds: -?\d+\.\d+\)", line), line
        # The host time outside the work both pipelines do: positive, and the share is their difference.
        outside_ours, outside_theirs, outside_share = (
            float(re.search(pattern, line).group(1))
            for pattern in (
                rf"outside the shared work {project} (\d+\.\d+)",
                rf"outside the shared work {project} [\d.]+, {bare} (\d+\.\d+)",
                r"share (-?\d+\.\d+) ms/step \(rounds: -?\d+\.\d+\);",
            )
        )
        assert 0 < outside_theirs < theirs and 0 < outside_ours < ours, line
        assert outside_share == pytest.approx(outside_ours - outside_theirs, abs=0.0011), line
        assert re.search(rf"; page faults per step {project} \d+, {bare} \d+$", line), line
    assert "| 8 | project-step (NHWC) |" in completed.stdout and "compile fell back" not in completed.stdout
