"""Whole batches drawn from tensors in memory: one index tensor per batch, no per-image calls.

The order of an epoch (and its augmentation) depends only on the seed and the epoch, never on
the number of processes or the device: every step has the same global batch whether one process
takes it or N processes take one slice each. The epoch's order and augmentation are drawn on the
CPU (so they are the same everywhere) and moved to the images' device once per epoch; each step
then only slices them, so on a GPU a batch is gathered without any host-device traffic.
"""

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from resnet_cifar.data.augment import CropFlip, draw_crop_flip


class BatchPlan(NamedTuple):
    """Which images make up this process's share of one batch, and how to augment them."""

    indices: torch.Tensor
    crop_flip: CropFlip | None


ORDER_STREAM, AUGMENTATION_STREAM = 0, 1


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator for one purpose (``stream``) in one epoch, independent of every other."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class EpochBatchSampler(Sampler[BatchPlan]):
    """Yields this process's slice of each global batch of an epoch.

    ``shuffle`` draws a new permutation per epoch; ``augment_padding`` (pixels, or None) draws
    crop offsets and flips for every image of the epoch. Lightning calls ``set_epoch``.
    ``state_dict`` says how far the current epoch's iteration got; after ``load_state_dict`` the
    next iteration of that epoch starts after the batches it had done.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        augment_padding: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment_padding = augment_padding
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.epoch = 0
        self.batches_done = 0  # of the current epoch, handed out by the running iteration
        self.resume_from: tuple[int, int] | None = None  # (epoch, batches done) of a checkpoint

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.resume_from = (state["epoch"], state["batches_done"])

    def __len__(self) -> int:
        return math.ceil(self.num_items / self.batch_size)

    def __iter__(self) -> Iterator[BatchPlan]:
        order = torch.arange(self.num_items)
        if self.shuffle:
            order = torch.randperm(self.num_items, generator=epoch_generator(self.seed, self.epoch, ORDER_STREAM))
        crop_flip = None
        if self.augment_padding is not None:
            generator = epoch_generator(self.seed, self.epoch, AUGMENTATION_STREAM)
            crop_flip = draw_crop_flip(self.num_items, self.augment_padding, generator)
        if self.device.type != "cpu":  # one copy per epoch; every step below is a slice
            order = order.to(self.device, non_blocking=True)
            if crop_flip is not None:
                crop_flip = CropFlip(*(t.to(self.device, non_blocking=True) for t in crop_flip))
        self.batches_done = 0
        if self.resume_from is not None:
            epoch, batches_done = self.resume_from
            self.resume_from = None
            self.batches_done = batches_done if epoch == self.epoch else 0
        for start in range(self.batches_done * self.batch_size, self.num_items, self.batch_size):
            # Counted when handed out: a checkpoint written after this batch's step resumes after it.
            self.batches_done += 1
            # The global batch split in world_size near-equal slices, this process taking one.
            low, high = shard_bounds(start, min(start + self.batch_size, self.num_items), self.rank, self.world_size)
            share = None if crop_flip is None else CropFlip(*(t[low:high] for t in crop_flip))
            yield BatchPlan(order[low:high], share)


class ResumableLoader(DataLoader):
    """A DataLoader of whole batches (an :class:`EpochBatchSampler`) that Lightning can resume
    mid-epoch: it saves ``state_dict`` in checkpoints and calls ``load_state_dict`` on resuming,
    so a resumed run takes exactly the batches, in the same order and with the same augmentation,
    that an uninterrupted run would have taken."""

    def __init__(self, dataset: Dataset, sampler: EpochBatchSampler) -> None:
        super().__init__(dataset, sampler=sampler, batch_size=None)  # each sampler item is a batch

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


def shard_bounds(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """The slice of positions [start, stop) that process ``rank`` of ``world_size`` takes.

    As ``torch.arange(start, stop).tensor_split(world_size)[rank]``: the first ``n % world_size``
    slices have one item more than the others.
    """
    size, extra = divmod(stop - start, world_size)
    low = start + rank * size + min(rank, extra)
    return low, low + size + (rank < extra)


class ImageBatches(Dataset):
    """uint8 images and labels indexed by a whole :class:`BatchPlan` at a time.

    The tensors may live on any device (see ``to``); a batch is gathered where they are.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> "ImageBatches":
        """The same images and labels on ``device`` (this object itself if they are there)."""
        device = torch.device(device)
        if self.images.device == device and self.labels.device == device:
            return self
        return ImageBatches(self.images.to(device), self.labels.to(device))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, plan: BatchPlan) -> dict:
        indices = plan.indices.to(self.images.device, non_blocking=True)  # no-op if already there
        batch = {"images": self.images[indices], "labels": self.labels[indices]}
        if plan.crop_flip is not None:
            batch["crop_flip"] = plan.crop_flip
        return batch
