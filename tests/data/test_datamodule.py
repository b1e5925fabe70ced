"""The split, the batch sampler and the data module, on synthetic and on image-folder data."""

from types import SimpleNamespace

import pytest
import torch

from fake_cifar import write_image_folder
from resnet_cifar.data import CIFARDataModule, per_device_batch_size, split_train_val
from resnet_cifar.data.batches import EpochBatchSampler
from resnet_cifar.errors import ConfigError


def test_paper_split_is_45k_5k_disjoint_and_fixed_by_its_seed():
    train, val = split_train_val(50_000, 5_000, split_seed=0)
    assert len(train) == 45_000 and len(val) == 5_000
    assert len(set(train.tolist()) | set(val.tolist())) == 50_000
    again_train, again_val = split_train_val(50_000, 5_000, split_seed=0)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    _, other_val = split_train_val(50_000, 5_000, split_seed=1)
    assert not torch.equal(val, other_val)


def test_val_size_0_trains_on_all_and_too_large_is_refused():
    train, val = split_train_val(50_000, 0, split_seed=0)
    assert len(train) == 50_000 and len(val) == 0
    with pytest.raises(ConfigError, match="data.val_size=50000 must be between 0 and 49999"):
        split_train_val(50_000, 50_000, split_seed=0)


def epoch_batches(sampler: EpochBatchSampler, epoch: int) -> list:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_image_appears_once_per_epoch_and_epochs_differ():
    sampler = EpochBatchSampler(1000, 128, shuffle=True, seed=0, augment_padding=4)
    assert len(sampler) == 8
    first = epoch_batches(sampler, 0)
    assert sorted(torch.cat([plan.indices for plan in first]).tolist()) == list(range(1000))
    assert [len(plan.indices) for plan in first] == [128] * 7 + [104]
    second = epoch_batches(sampler, 1)
    assert not torch.equal(first[0].indices, second[0].indices)
    assert not torch.equal(first[0].crop_flip.top, second[0].crop_flip.top)


def test_same_seed_same_order_and_augmentation():
    def first_batch(seed):
        return epoch_batches(EpochBatchSampler(1000, 128, shuffle=True, seed=seed, augment_padding=4), 3)[0]

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert torch.equal(a.indices, b.indices) and all(torch.equal(x, y) for x, y in zip(a.crop_flip, b.crop_flip))
    assert not torch.equal(a.indices, c.indices)


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_processes_take_disjoint_slices_of_global_batches(world_size):
    single = epoch_batches(EpochBatchSampler(1000, 128, shuffle=True, seed=5, augment_padding=4), 2)
    shards = [
        epoch_batches(
            EpochBatchSampler(1000, 128, shuffle=True, seed=5, augment_padding=4, rank=rank, world_size=world_size), 2
        )
        for rank in range(world_size)
    ]
    for step, whole in enumerate(single):
        parts = [shard[step] for shard in shards]
        assert torch.equal(torch.cat([p.indices for p in parts]), whole.indices)
        assert torch.equal(torch.cat([p.crop_flip.flip for p in parts]), whole.crop_flip.flip)
    seen = torch.cat([plan.indices for shard in shards for plan in shard])
    assert sorted(seen.tolist()) == list(range(1000))


def test_evaluation_batches_are_in_order_without_augmentation():
    plans = list(EpochBatchSampler(250, 100, shuffle=False))
    assert torch.equal(torch.cat([p.indices for p in plans]), torch.arange(250))
    assert all(p.crop_flip is None for p in plans)


def test_global_batch_must_split_over_the_processes():
    assert per_device_batch_size(128, 4) == 32
    with pytest.raises(ConfigError, match="data.batch_size=127 .* 2 processes"):
        per_device_batch_size(127, 2)


def attach_fake_trainer(datamodule: CIFARDataModule, rank: int = 0, world_size: int = 1) -> None:
    datamodule.trainer = SimpleNamespace(global_rank=rank, world_size=world_size)


def test_data_module_on_an_image_folder(tmp_path):
    root = write_image_folder(tmp_path / "cifar", num_train_per_class=20, num_test_per_class=5)
    datamodule = CIFARDataModule(root=str(root), batch_size=32, eval_batch_size=50, val_size=40)
    datamodule.prepare_data()
    datamodule.setup("fit")
    attach_fake_trainer(datamodule)
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (160, 40, 50)
    assert (root / "cifar10-uint8.pt").is_file()  # decoded once, cached beside the data

    train_images = datamodule.train_set.images
    expected_mean = train_images.float().mean(0) / 255
    assert torch.allclose(datamodule.mean_image, expected_mean)

    loader = datamodule.train_dataloader()
    raw = next(iter(loader))
    images, labels = datamodule.on_after_batch_transfer(raw, 0)
    assert images.shape == (32, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and len(labels) == 32
    # The training batch is augmented: pixels are the crop of the image minus the mean image.
    assert not torch.allclose(images, datamodule.normalize(raw["images"]))

    test_raw = next(iter(datamodule.test_dataloader()))
    test_images, _ = datamodule.on_after_batch_transfer(test_raw, 0)
    assert torch.allclose(test_images, test_raw["images"].float() / 255 - expected_mean)
    # Mean subtraction centres the training split.
    centred = datamodule.normalize(train_images)
    assert centred.mean(0).abs().max() < 1e-5


def test_split_is_independent_of_the_training_seed(tmp_path):
    def val_images(seed):
        datamodule = CIFARDataModule(dataset="synthetic", synthetic_sizes=(500, 100), val_size=50, seed=seed)
        datamodule.setup("fit")
        return datamodule.val_set.images

    assert torch.equal(val_images(0), val_images(7))


def test_ddp_share_of_a_training_batch(tmp_path):
    datamodule = CIFARDataModule(dataset="synthetic", synthetic_sizes=(600, 100), val_size=88, batch_size=128)
    datamodule.setup("fit")
    shares = []
    for rank in range(2):
        attach_fake_trainer(datamodule, rank=rank, world_size=2)
        shares.append(next(iter(datamodule.train_dataloader())))
    assert [len(share["labels"]) for share in shares] == [64, 64]
    attach_fake_trainer(datamodule, rank=0, world_size=3)
    with pytest.raises(ConfigError, match="must split evenly over 3 processes"):
        datamodule.train_dataloader()


def test_unknown_dataset_and_wrong_class_count_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.dataset='svhn' is not known; use one of cifar10, cifar100, synthetic"):
        CIFARDataModule(dataset="svhn")
    datamodule = CIFARDataModule(dataset="synthetic", num_classes=100, synthetic_sizes=(200, 50), val_size=20)
    datamodule.arrays = CIFARDataModule(dataset="synthetic", synthetic_sizes=(200, 50))._load()
    with pytest.raises(ConfigError, match="data.num_classes=100 but synthetic .* has 10 classes"):
        datamodule.setup("fit")


def test_resumed_epoch_continues_after_trained_batches():
    sampler = EpochBatchSampler(1000, 128, shuffle=True, seed=0, augment_padding=4)
    full = epoch_batches(sampler, 4)
    sampler.set_epoch(4)
    iterator = iter(sampler)
    for _ in range(3):  # a checkpoint is written after the third batch's step
        next(iterator)
    state = sampler.state_dict()
    assert state == {"epoch": 4, "batches_done": 3}
    restored = EpochBatchSampler(1000, 128, shuffle=True, seed=0, augment_padding=4)
    restored.load_state_dict(state)
    resumed = epoch_batches(restored, 4)
    assert len(resumed) == len(full) - 3
    for plan, expected in zip(resumed, full[3:]):
        assert torch.equal(plan.indices, expected.indices)
        assert torch.equal(plan.crop_flip.top, expected.crop_flip.top)
    assert len(epoch_batches(restored, 5)) == len(full)  # only the resumed epoch is shortened
    restored.load_state_dict({"epoch": 3, "batches_done": 8})  # a checkpoint at an epoch's end
    assert len(epoch_batches(restored, 4)) == len(full)  # the next epoch is whole


def test_order_and_augmentation_come_from_independent_streams():
    """Turning shuffling off changes the order only: image position i keeps its crop and flip."""
    shuffled = epoch_batches(EpochBatchSampler(300, 100, shuffle=True, seed=3, augment_padding=4), 1)
    ordered = epoch_batches(EpochBatchSampler(300, 100, shuffle=False, seed=3, augment_padding=4), 1)
    assert not torch.equal(shuffled[0].indices, ordered[0].indices)
    for a, b in zip(shuffled, ordered):
        assert all(torch.equal(x, y) for x, y in zip(a.crop_flip, b.crop_flip))
