"""CIFAR data: file readers, the batched augmentation and the LightningDataModule."""

from resnet_cifar.data.datamodule import CIFARDataModule, per_device_batch_size, split_train_val
from resnet_cifar.data.sources import CifarArrays, load_cifar, synthetic_cifar

__all__ = [
    "CIFARDataModule",
    "CifarArrays",
    "load_cifar",
    "per_device_batch_size",
    "split_train_val",
    "synthetic_cifar",
]
