"""The synthetic source (``data.synthetic_sizes``): CIFAR's shapes and types, the same images for
the same seed, and bad sizes refused."""

from __future__ import annotations

import pytest
import torch

from fake_cifar import assert_form, assert_same
from resnet_cifar.data.sources import synthetic_cifar
from resnet_cifar.errors import ConfigError


def test_synthetic_shapes_dtypes_and_classes() -> None:
    arrays = synthetic_cifar(num_train=6, num_test=3, num_classes=4)
    assert_form(arrays, 6, 3)
    assert arrays.classes == ("class0", "class1", "class2", "class3")
    assert 0 <= int(arrays.train_labels.min()) and int(arrays.train_labels.max()) < 4


def test_synthetic_is_deterministic_per_seed() -> None:
    assert_same(synthetic_cifar(8, 4, seed=1), synthetic_cifar(8, 4, seed=1))
    assert not torch.equal(synthetic_cifar(8, 4, seed=1).train_images, synthetic_cifar(8, 4, seed=2).train_images)


def test_synthetic_rejects_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="num_classes >= 1"):
        synthetic_cifar(4, 2, num_classes=0)
