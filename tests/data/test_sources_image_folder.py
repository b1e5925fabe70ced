"""Reading CIFAR from image folders (``<root>/{train,test}/<class>/<image>``): exact pixels and
labels, class order, and an error naming the file or folder for each damaged or missing piece."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fake_cifar import CIFAR10_CLASSES, assert_form, chw, fake_images, write_image_folder
from resnet_cifar.data.sources import load_cifar
from resnet_cifar.errors import DataError


def test_image_folder_png_gives_exact_pixels_and_labels(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, num_train_per_class=4, num_test_per_class=2, num_classes=3)
    arrays = load_cifar(root)
    assert_form(arrays, 12, 6)
    assert arrays.classes == ("airplane", "automobile", "bird")
    assert torch.equal(arrays.train_images, chw(fake_images(12, seed=0)))
    assert torch.equal(arrays.test_images, chw(fake_images(6, seed=1)))
    assert arrays.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert arrays.test_labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_ten_class_folders_give_cifar10_label_order(tmp_path: Path) -> None:
    arrays = load_cifar(write_image_folder(tmp_path, 1, 1))
    assert arrays.classes == CIFAR10_CLASSES
    assert arrays.train_labels.tolist() == list(range(10))


def test_classes_are_sorted_folder_names(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, num_train_per_class=2, num_test_per_class=1, num_classes=3)
    for split in ("train", "test"):
        (root / split / "airplane").rename(root / split / "zebra")
    arrays = load_cifar(root)
    assert arrays.classes == ("automobile", "bird", "zebra")
    assert arrays.train_labels.tolist() == [0, 0, 1, 1, 2, 2]
    written = chw(fake_images(6, seed=0))  # written as airplane, airplane, automobile, ...
    assert torch.equal(arrays.train_images, torch.cat([written[2:], written[:2]]))


def test_image_folder_jpeg_matches_pil_decoding(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, 2, 1, num_classes=2, image_format="jpg")
    arrays = load_cifar(root)
    assert_form(arrays, 4, 2)
    files = sorted((root / "train").glob("*/*.jpg"))
    expected = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
    assert torch.equal(arrays.train_images, expected)


@pytest.mark.parametrize(("image_format", "keep"), [("png", 0.1), ("png", 0.7), ("jpg", 0.7)])
def test_corrupt_image_file_names_the_file(tmp_path: Path, image_format: str, keep: float) -> None:
    root = write_image_folder(tmp_path, 2, 1, num_classes=2, image_format=image_format)
    bad = root / "train" / "automobile" / f"0001.{image_format}"
    data = bad.read_bytes()
    bad.write_bytes(data[: int(len(data) * keep)])  # 0.1: header damaged, 0.7: pixel data truncated
    with pytest.raises(DataError, match="cannot decode image file") as err:
        load_cifar(root)
    assert str(bad) in str(err.value)
    assert "replace or remove it" in str(err.value)


def test_image_of_wrong_size_names_the_file(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, 2, 1, num_classes=2)
    bad = root / "test" / "airplane" / "0000.png"
    Image.new("RGB", (64, 48)).save(bad)
    with pytest.raises(DataError, match="is 64x48 pixels; CIFAR images are 32x32") as err:
        load_cifar(root)
    assert str(bad) in str(err.value)


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, 1, 1, num_classes=2)
    for split in ("train", "test"):
        (root / split / "cat").mkdir()
    with pytest.raises(DataError, match=f"class folder {root / 'train' / 'cat'} has no images"):
        load_cifar(root)


def test_split_without_class_folders_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        load_cifar(tmp_path)


def test_train_and_test_must_have_the_same_classes(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, 1, 1, num_classes=3)
    (root / "test" / "bird").rename(root / "test" / "birds")
    with pytest.raises(DataError, match="class folders differ") as err:
        load_cifar(root)
    assert "birds" in str(err.value)


def test_missing_test_folder_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, 1, 1, num_classes=2)
    (root / "test").rename(root / "val")
    with pytest.raises(DataError, match=f"{root / 'test'} is missing"):
        load_cifar(root)
