"""Read CIFAR-10/100 from disk into whole-data-set uint8 tensors, and cache them.

Training keeps the whole data set as one uint8 tensor (airbench style), so this module only
has to turn whatever the user has on disk into that tensor once. Accepted inputs, tried in
this order: our own cache file, an image folder (``train/<class>/*``, ``test/<class>/*``),
torchvision's archive folder (downloaded and MD5-verified by torchvision when asked).
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.datasets.utils import check_integrity

from resnet_cifar.errors import ConfigError, DataError, unpickler_reason
from resnet_cifar.files import atomic_write

log = logging.getLogger(__name__)

DATASETS: dict[str, type[torchvision.datasets.CIFAR10]] = {
    "cifar10": torchvision.datasets.CIFAR10,
    "cifar100": torchvision.datasets.CIFAR100,
}
IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarArrays:
    """The whole data set in memory: images uint8 N x 3 x 32 x 32, labels int64 N."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]


def load_cifar(
    root: str | os.PathLike, name: str = "cifar10", download: bool = False, cache: bool = True
) -> CifarArrays:
    """Load CIFAR ``name`` from ``root``; decoded files are cached as ``<root>/<name>-uint8.pt``
    (``cache=False`` reads a cache file but writes none: nothing is written into ``root``).

    Decoding 60k images takes seconds, loading the cache a fraction of that, so every run after
    the first starts from the cache. Delete the cache file to rebuild it from the source files.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set name {name!r}; valid names are {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    cache_file = root / f"{name}-uint8.pt"
    if cache_file.is_file():
        return _read_cache(cache_file)
    if (root / "train").is_dir() or (root / "test").is_dir():
        arrays = _read_image_folder(root)
    elif (root / DATASETS[name].base_folder).is_dir() or download:
        arrays = _read_torchvision(root, name, download)
    else:
        raise DataError(_no_data_message(root, name))
    if cache:
        _write_cache(arrays, cache_file)
    return arrays


def synthetic_cifar(num_train: int, num_test: int, num_classes: int = 10, seed: int = 0) -> CifarArrays:
    """Random images and labels shaped like CIFAR, for smoke runs that need no files."""
    if num_train < 0 or num_test < 0 or num_classes < 1:
        raise ConfigError(
            f"synthetic data needs num_train, num_test >= 0 and num_classes >= 1, "
            f"got {num_train}, {num_test}, {num_classes}"
        )
    gen = torch.Generator().manual_seed(seed)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, *IMAGE_SHAPE), dtype=torch.uint8, generator=gen)

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, num_classes, (n,), dtype=torch.int64, generator=gen)

    return CifarArrays(
        train_images=images(num_train),
        train_labels=labels(num_train),
        test_images=images(num_test),
        test_labels=labels(num_test),
        classes=tuple(f"class{i}" for i in range(num_classes)),
    )


def _no_data_message(root: Path, name: str) -> str:
    where = f"data root {root} does not exist" if not root.exists() else f"no {name} data found in {root}"
    return (
        f"{where}; point data.root=... at a folder holding either train/<class>/* and "
        f"test/<class>/* images, or torchvision's {DATASETS[name].base_folder}/ folder, "
        f"or set data.download=true to download {name} into it"
    )


def _read_cache(path: Path) -> CifarArrays:
    """Load and check the cache; a half-written or foreign file must not reach training."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        arrays = CifarArrays(
            train_images=blob["train_images"],
            train_labels=blob["train_labels"],
            test_images=blob["test_images"],
            test_labels=blob["test_labels"],
            classes=tuple(blob["classes"]),
        )
    except Exception as err:  # torch.load fails on damaged files with many exception types
        reason = unpickler_reason(err) if isinstance(err, pickle.UnpicklingError) else err
        raise DataError(_corrupt_cache_message(path, f"cannot be read: {reason}")) from err
    problem = _check_arrays(arrays)
    if problem:
        raise DataError(_corrupt_cache_message(path, problem))
    log.info("loaded %s from cache %s", _describe(arrays), path)
    return arrays


def _corrupt_cache_message(path: Path, problem: str) -> str:
    return f"cache file {path} is corrupt ({problem}); delete it so it is rebuilt on the next run"


def _check_arrays(arrays: CifarArrays) -> str | None:
    """Return what is wrong with ``arrays``, or None when they have the promised form."""
    if not arrays.classes or not all(isinstance(c, str) for c in arrays.classes):
        return "classes must be a non-empty list of names"
    for split in ("train", "test"):
        images = getattr(arrays, f"{split}_images")
        labels = getattr(arrays, f"{split}_labels")
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.shape[1:] != IMAGE_SHAPE:
            return f"{split}_images must be a uint8 tensor of shape N x 3 x 32 x 32"
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
            return f"{split}_labels must be an int64 tensor with one label per image"
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < len(arrays.classes):
            return f"{split}_labels must lie in [0, {len(arrays.classes)})"
    return None


def _write_cache(arrays: CifarArrays, path: Path) -> None:
    """Write the cache atomically; an unwritable folder (shared read-only data) is no error."""
    blob = {
        "train_images": arrays.train_images,
        "train_labels": arrays.train_labels,
        "test_images": arrays.test_images,
        "test_labels": arrays.test_labels,
        "classes": list(arrays.classes),
    }
    try:
        with atomic_write(path) as temporary:
            torch.save(blob, temporary)
        log.info("wrote cache %s", path)
    except OSError as err:
        log.warning("could not write cache %s (%s); continuing without a cache", path, err)


def _read_image_folder(root: Path) -> CifarArrays:
    """Decode ``train/<class>/*`` and ``test/<class>/*``; sorted class folders give the labels."""
    train_classes = _class_folders(root / "train")
    test_classes = _class_folders(root / "test")
    if train_classes != test_classes:
        raise DataError(
            f"class folders differ between {root / 'train'} ({', '.join(train_classes)}) and "
            f"{root / 'test'} ({', '.join(test_classes)}); both must hold the same class folders"
        )
    train_images, train_labels = _decode_split(root / "train", train_classes)
    test_images, test_labels = _decode_split(root / "test", test_classes)
    arrays = CifarArrays(train_images, train_labels, test_images, test_labels, tuple(train_classes))
    log.info("decoded %s from image folder %s", _describe(arrays), root)
    return arrays


def _class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DataError(
            f"{split_dir} is missing; an image-folder data root needs both train/<class>/* and test/<class>/*"
        )
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} has no class folders; put each class's images in {split_dir}/<class>/")
    return classes


def _decode_split(split_dir: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one split in sorted (class, file name) order, so the result is deterministic."""
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        class_files = sorted(p for p in (split_dir / cls).iterdir() if p.is_file() and not p.name.startswith("."))
        if not class_files:
            raise DataError(f"class folder {split_dir / cls} has no images; add its images or remove the folder")
        files += class_files
        labels += [label] * len(class_files)
    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        images[i] = _decode_file(path)
    return _channels_first(images), torch.tensor(labels, dtype=torch.int64)


def _decode_file(path: Path) -> np.ndarray:
    # PIL, not torchvision.io: its image decoders are deprecated since torchvision 0.29, and the
    # files are decoded once per data root (then read from <root>/<name>-uint8.pt), so speed hardly matters.
    try:
        with Image.open(path) as image:
            if image.size != (32, 32):
                raise DataError(f"image file {path} is {image.size[0]}x{image.size[1]} pixels; CIFAR images are 32x32")
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for unreadable or damaged files
        raise DataError(f"cannot decode image file {path} ({err}); replace or remove it") from err


def _read_torchvision(root: Path, name: str, download: bool) -> CifarArrays:
    """Read torchvision's pickled batches; torchvision itself downloads and MD5-checks them."""
    dataset_cls = DATASETS[name]
    folder = root / dataset_cls.base_folder
    archive = root / dataset_cls.filename
    try:
        train = dataset_cls(root, train=True, download=download)
        test = dataset_cls(root, train=False)
    except OSError as err:  # urllib's URLError included
        action = f"download {dataset_cls.url} into" if download else "read"
        raise DataError(
            f"could not {action} {root} ({err}); check the network and the folder's permissions, "
            f"or fetch {dataset_cls.url} by hand and unpack it into {root}"
        ) from err
    except RuntimeError as err:  # torchvision's "... not found or corrupted"
        if download and archive.is_file() and not check_integrity(str(archive), dataset_cls.tgz_md5):
            raise DataError(
                f"downloaded archive {archive} fails its MD5 check (interrupted or corrupted download); "
                "delete it and run again to download it afresh"
            ) from err
        raise DataError(
            f"{name} files in {folder} are missing or fail their MD5 check (incomplete or corrupt copy); "
            f"delete {folder} and set data.download=true to download it again"
        ) from err
    arrays = CifarArrays(
        train_images=_channels_first(train.data),
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=_channels_first(test.data),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        classes=tuple(train.classes),
    )
    log.info("read %s from %s", _describe(arrays), folder)
    return arrays


def _channels_first(images_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).contiguous()


def _describe(arrays: CifarArrays) -> str:
    return f"{len(arrays.train_labels)} train / {len(arrays.test_labels)} test images in {len(arrays.classes)} classes"
