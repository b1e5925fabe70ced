"""Small fake CIFAR data sets in the real on-disk formats, for tests (no network, no real data).

Pixel content is seeded noise, so a test can regenerate what was written with
:func:`fake_images` and compare exact values:

- image folder: split images are ``fake_images(num_per_class * num_classes, seed)`` for train
  and ``seed + 1`` for test; image ``i`` belongs to class ``i // num_per_class`` and is stored
  as ``<split>/<class>/<i % num_per_class:04d>.<format>``, so reading classes and file names
  in sorted order gives back exactly that array.
- torchvision archive: train images are ``fake_images(num_train, seed)``, test images
  ``fake_images(num_test, seed + 1)``, labels ``fake_labels(n, num_classes)``.

torchvision checks its files against MD5 sums hard-coded on ``CIFAR10``/``CIFAR100``; use
:func:`trust_torchvision_files` to make it accept the fake files, and :func:`serve_downloads`
to stand in for the network. :func:`chw`, :func:`assert_form` and :func:`assert_same` check
what the sources read back.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from resnet_cifar.data.sources import CifarArrays

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DATASET_CLASSES = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def class_names(num_classes: int) -> list[str]:
    """CIFAR-10's names (already in label order) for up to 10 classes, else class000, class001, ..."""
    if num_classes <= len(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES[:num_classes])
    return [f"class{i:03d}" for i in range(num_classes)]


def fake_images(num: int, seed: int) -> np.ndarray:
    """Seeded random uint8 images, N x 32 x 32 x 3 (channels last, as files and torchvision store them)."""
    return np.random.default_rng(seed).integers(0, 256, size=(num, 32, 32, 3), dtype=np.uint8)


def fake_labels(num: int, num_classes: int) -> np.ndarray:
    """Labels 0, 1, ..., num_classes - 1, 0, 1, ... so every class occurs when num >= num_classes."""
    return np.arange(num, dtype=np.int64) % num_classes


def write_image_folder(
    root: Path,
    num_train_per_class: int,
    num_test_per_class: int,
    num_classes: int = 10,
    image_format: str = "png",
    seed: int = 0,
) -> Path:
    """Write ``root/{train,test}/<class>/NNNN.<image_format>`` ("png" is lossless, "jpg" is not)."""
    for split, per_class, split_seed in (("train", num_train_per_class, seed), ("test", num_test_per_class, seed + 1)):
        images = fake_images(per_class * num_classes, split_seed)
        for label, name in enumerate(class_names(num_classes)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(per_class):
                Image.fromarray(images[label * per_class + j]).save(folder / f"{j:04d}.{image_format}")
    return root


def write_torchvision_archive(root: Path, num_train: int, num_test: int, name: str = "cifar10", seed: int = 0) -> Path:
    """Write torchvision's extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) under root.

    CIFAR-10 gets ``data_batch_1..5`` (train split evenly), ``test_batch`` and ``batches.meta``;
    CIFAR-100 gets ``train``, ``test`` and ``meta``, with the fields of the official pickles.
    """
    num_classes = NUM_CLASSES[name]
    folder = root / DATASET_CLASSES[name].base_folder
    folder.mkdir(parents=True, exist_ok=True)
    train = (fake_images(num_train, seed), fake_labels(num_train, num_classes))
    test = (fake_images(num_test, seed + 1), fake_labels(num_test, num_classes))
    if name == "cifar10":
        parts = zip(np.array_split(train[0], 5), np.array_split(train[1], 5))
        for i, (images, labels) in enumerate(parts, start=1):
            _pickle(folder / f"data_batch_{i}", _batch(images, labels, "labels", f"training batch {i} of 5"))
        _pickle(folder / "test_batch", _batch(*test, "labels", "testing batch 1 of 1"))
        _pickle(
            folder / "batches.meta", {"label_names": class_names(10), "num_cases_per_batch": 10000, "num_vis": 3072}
        )
    else:
        for split, (images, labels) in (("train", train), ("test", test)):
            batch = _batch(images, labels, "fine_labels", split)
            batch["coarse_labels"] = [label // 5 for label in batch["fine_labels"]]
            _pickle(folder / split, batch)
        _pickle(folder / "meta", {"fine_label_names": class_names(100), "coarse_label_names": class_names(20)})
    return root


def write_torchvision_tarball(root: Path, name: str = "cifar10") -> Path:
    """Pack the folder written by :func:`write_torchvision_archive` into ``root/<official archive name>``."""
    dataset_cls = DATASET_CLASSES[name]
    tarball = root / dataset_cls.filename
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(root / dataset_cls.base_folder, arcname=dataset_cls.base_folder)
    return tarball


def trust_torchvision_files(monkeypatch: pytest.MonkeyPatch, root: Path, name: str = "cifar10") -> None:
    """Replace torchvision's hard-coded MD5 sums with those of the fake files under root.

    Covers the batch files, the meta file and, when ``root/<archive name>`` exists, the
    tarball. Files changed afterwards then fail torchvision's check, as corrupt ones would.
    """
    dataset_cls = DATASET_CLASSES[name]
    folder = root / dataset_cls.base_folder

    def md5_list(entries: list[list[str]]) -> list[list[str]]:
        return [[file_name, _md5(folder / file_name)] for file_name, _ in entries]

    monkeypatch.setattr(dataset_cls, "train_list", md5_list(dataset_cls.train_list))
    monkeypatch.setattr(dataset_cls, "test_list", md5_list(dataset_cls.test_list))
    monkeypatch.setattr(dataset_cls, "meta", {**dataset_cls.meta, "md5": _md5(folder / dataset_cls.meta["filename"])})
    if (root / dataset_cls.filename).is_file():
        monkeypatch.setattr(dataset_cls, "tgz_md5", _md5(root / dataset_cls.filename))


def serve_downloads(monkeypatch: pytest.MonkeyPatch, served: Path | None) -> list[str]:
    """Make torchvision's downloader copy ``served`` instead of using the network.

    ``served=None`` simulates being offline (every download raises URLError). Returns the
    list of URLs torchvision asked for, filled in as it downloads.
    """
    requested: list[str] = []

    def fake_urlretrieve(url: str, filename: str, chunk_size: int = 0) -> None:
        requested.append(url)
        if served is None:
            raise urllib.error.URLError("network is unreachable (simulated)")
        shutil.copyfile(served, filename)

    monkeypatch.setattr(torchvision.datasets.utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(torchvision.datasets.utils, "_urlretrieve", fake_urlretrieve)
    return requested


def chw(images_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)


def assert_form(arrays: CifarArrays, num_train: int, num_test: int) -> None:
    for images, labels, n in (
        (arrays.train_images, arrays.train_labels, num_train),
        (arrays.test_images, arrays.test_labels, num_test),
    ):
        assert images.dtype == torch.uint8 and images.shape == (n, 3, 32, 32) and images.is_contiguous()
        assert labels.dtype == torch.int64 and labels.shape == (n,)


def assert_same(a: CifarArrays, b: CifarArrays) -> None:
    assert a.classes == b.classes
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def _batch(images: np.ndarray, labels: np.ndarray, label_key: str, batch_label: str) -> dict:
    """One pickled batch as in the official release: rows of 3072 bytes, channel planes R, G, B."""
    return {
        "batch_label": batch_label,
        label_key: labels.tolist(),
        "data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
        "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
    }


def _pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
