"""CIFAR-10/100 as a LightningDataModule with the paper's split, input and augmentation.

Files are decoded once into uint8 tensors (see ``sources``). On a GPU those tensors are moved
once to the training device in ``setup`` (about 180 MB for CIFAR), so a batch is an index into
device memory and no image crosses the bus during training. Batches leave the loader as uint8
images with their augmentation parameters; cropping, flipping and mean subtraction happen on
the training device, batch-wise, in ``on_after_batch_transfer`` — or, with
``defer_train_augmentation``, inside the consumer's own training step (see :class:`RawTrainBatch`).
"""

from typing import NamedTuple

import lightning as L
import torch

from resnet_cifar.data.augment import CropFlip, apply_crop_flip
from resnet_cifar.data.batches import EpochBatchSampler, ImageBatches, ResumableLoader
from resnet_cifar.data.sources import CifarArrays, load_cifar, synthetic_cifar
from resnet_cifar.errors import ConfigError

DATASETS = ("cifar10", "cifar100", "synthetic")
NUM_TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000}


class RawTrainBatch(NamedTuple):
    """A training batch as it leaves the loader: uint8 images not yet augmented or normalised.

    Handed over when ``defer_train_augmentation`` is set, for a consumer that applies
    :meth:`CIFARDataModule.training_inputs` itself (e.g. inside one compiled training step).
    """

    images: torch.Tensor
    crop_flip: CropFlip
    labels: torch.Tensor


def split_train_val(num_images: int, val_size: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded train/val split of the training images (``val_size`` held out)."""
    if not 0 <= val_size < num_images:
        raise ConfigError(
            f"data.val_size={val_size} must be between 0 and {num_images - 1} "
            f"(the training set has {num_images} images); the paper holds out 5000"
        )
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(split_seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


def per_device_batch_size(batch_size: int, world_size: int, key: str = "data.batch_size") -> int:
    """The batch each of ``world_size`` processes takes so that together they take ``batch_size``."""
    if batch_size < 1 or batch_size % world_size != 0:
        raise ConfigError(
            f"{key}={batch_size} is the global batch and must split evenly over {world_size} "
            f"processes (devices x nodes); choose a multiple of {world_size}, e.g. "
            f"{max(world_size, batch_size // world_size * world_size)}"
        )
    return batch_size // world_size


class CIFARDataModule(L.LightningDataModule):
    """CIFAR with the 45k/5k split, per-pixel mean subtraction and pad-crop-flip augmentation.

    ``batch_size`` and ``eval_batch_size`` are global: each of N processes takes 1/N of every
    batch. ``seed`` drives shuffling and augmentation; ``split_seed`` the held-out split, so the
    split stays fixed across training seeds. ``cache`` writes the decoded images into ``root``
    for the next run (``cache=False``: nothing is written there).
    """

    def __init__(
        self,
        dataset: str = "cifar10",
        root: str = "data",
        download: bool = False,
        cache: bool = True,
        num_classes: int = 10,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 0,
        seed: int = 0,
        padding: int = 4,
        synthetic_sizes: tuple[int, int] = (2000, 500),
    ) -> None:
        super().__init__()
        # The settings travel in checkpoints (datamodule_hyper_parameters): evaluating a checkpoint
        # uses the data it was trained on. The trackers get the run's own short set instead.
        self.save_hyperparameters(logger=False)
        self.hparams["synthetic_sizes"] = tuple(synthetic_sizes)  # plain, not OmegaConf's list
        if dataset not in DATASETS:
            raise ConfigError(f"data.dataset={dataset!r} is not known; use one of {', '.join(DATASETS)}")
        self.dataset = dataset
        self.root = root
        self.download = download
        self.cache = cache
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.split_seed = split_seed
        self.seed = seed
        self.padding = padding
        self.synthetic_sizes = tuple(synthetic_sizes)
        self.arrays: CifarArrays | None = None
        self.mean_image: torch.Tensor | None = None
        self._mean_on_device: dict[torch.device, torch.Tensor] = {}
        # Set by a consumer that augments training batches itself (see RawTrainBatch).
        self.defer_train_augmentation = False

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The training split's mean image, saved in checkpoints: an exported network subtracts it
        from its inputs without needing the data. Resuming computes it from the data again."""
        return {} if self.mean_image is None else {"mean_image": self.mean_image}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Nothing is restored: the mean image is always the data's own (see state_dict)."""

    def check_world_size(self, world_size: int) -> None:
        """Fail before any work starts if the global batches do not split over the processes."""
        per_device_batch_size(self.batch_size, world_size)
        per_device_batch_size(self.eval_batch_size, world_size, key="data.eval_batch_size")

    def _load(self) -> CifarArrays:
        if self.dataset == "synthetic":
            num_train, num_test = self.synthetic_sizes
            return synthetic_cifar(num_train, num_test, self.num_classes, seed=self.split_seed)
        return load_cifar(self.root, self.dataset, download=self.download, cache=self.cache)

    def prepare_data(self) -> None:
        # Runs on one process per node: download and decode there, so the others read the cache.
        self.arrays = self._load()

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is None:
            self.arrays = self._load()
        arrays = self.arrays
        if len(arrays.classes) != self.num_classes:
            raise ConfigError(
                f"data.num_classes={self.num_classes} but {self.dataset} under {self.root} has "
                f"{len(arrays.classes)} classes; set data.num_classes={len(arrays.classes)}"
            )
        train_idx, val_idx = split_train_val(len(arrays.train_labels), self.val_size, self.split_seed)
        train_images = arrays.train_images[train_idx]
        # The paper's input: the mean image of the training split subtracted from every image.
        # Computed on the CPU, so that it is the same number whatever the training device.
        self.mean_image = train_images.float().mean(dim=0) / 255
        device = self.data_device()
        # On the batches' device from the start: filling it lazily inside a compiled step would
        # change what the compiled graph assumed, and compile it again at its next call.
        self._mean_on_device = {device: self.mean_image.to(device)}
        self.train_set = ImageBatches(train_images, arrays.train_labels[train_idx]).to(device)
        self.val_set = ImageBatches(arrays.train_images[val_idx], arrays.train_labels[val_idx]).to(device)
        self.test_set = ImageBatches(arrays.test_images, arrays.test_labels).to(device)

    def data_device(self) -> torch.device:
        """Where the images live: the trainer's device when it is a GPU, else the CPU.

        On a GPU every batch is then gathered, augmented and normalised in device memory. CPU
        training (and a data module without a trainer) keeps the tensors where they are.
        """
        strategy = getattr(self.trainer, "strategy", None) if self.trainer is not None else None
        device = getattr(strategy, "root_device", None)
        return device if device is not None and device.type != "cpu" else torch.device("cpu")

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, images: ImageBatches, batch_size: int, train: bool) -> ResumableLoader:
        rank, world_size = self._rank_and_world()
        per_device_batch_size(batch_size, world_size)
        sampler = EpochBatchSampler(
            len(images),
            batch_size,
            shuffle=train,
            seed=self.seed,
            augment_padding=self.padding if train else None,
            rank=rank,
            world_size=world_size,
            device=images.device,
        )
        return ResumableLoader(images, sampler)

    def train_dataloader(self) -> ResumableLoader:
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> ResumableLoader | list:
        if len(self.val_set) == 0:
            return []
        return self._loader(self.val_set, self.eval_batch_size, train=False)

    def test_dataloader(self) -> ResumableLoader:
        return self._loader(self.test_set, self.eval_batch_size, train=False)

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        """Move the batch's few known tensors (nothing moves when the data lives on ``device``).

        Lightning's generic version walks the batch as a nested collection, which costs more
        Python per step than the rest of the data path.
        """
        moved = {key: value.to(device, non_blocking=True) for key, value in batch.items() if key != "crop_flip"}
        if "crop_flip" in batch:
            moved["crop_flip"] = CropFlip(*(t.to(device, non_blocking=True) for t in batch["crop_flip"]))
        return moved

    def on_after_batch_transfer(
        self, batch: dict, dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor] | RawTrainBatch:
        if "crop_flip" not in batch:  # evaluation: no augmentation
            return self.normalize(batch["images"]), batch["labels"]
        if self.defer_train_augmentation:
            return RawTrainBatch(batch["images"], batch["crop_flip"], batch["labels"])
        return self.training_inputs(batch["images"], batch["crop_flip"]), batch["labels"]

    def training_inputs(self, images: torch.Tensor, crop_flip: CropFlip) -> torch.Tensor:
        """The network's input for a training batch: uint8 images cropped, flipped, normalised."""
        return self.normalize(apply_crop_flip(images, crop_flip, self.padding))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images to float in [0, 1] minus the training split's mean image."""
        mean = self._mean_on_device.get(images.device)
        if mean is None:
            mean = self._mean_on_device.setdefault(images.device, self.mean_image.to(images.device))
        return images.float().div_(255).sub_(mean)
