"""Reading CIFAR from image folders, torchvision archives, downloads and the cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fake_cifar import (
    CIFAR10_CLASSES,
    DATASET_CLASSES,
    class_names,
    fake_images,
    fake_labels,
    serve_downloads,
    trust_torchvision_files,
    write_image_folder,
    write_torchvision_archive,
    write_torchvision_tarball,
)
from resnet_cifar import files
from resnet_cifar.data import sources
from resnet_cifar.data.sources import CifarArrays, load_cifar, synthetic_cifar
from resnet_cifar.errors import ConfigError, DataError


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


# --- image folder -------------------------------------------------------------------------


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


# --- cache --------------------------------------------------------------------------------


def test_cache_is_written_once_and_then_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_image_folder(tmp_path, 2, 1, num_classes=2)
    first = load_cifar(root)
    cache = root / "cifar10-uint8.pt"
    assert cache.is_file()
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []
    for split in ("train", "test"):  # the source files are no longer needed
        for f in (root / split).glob("*/*"):
            f.unlink()
    monkeypatch.setattr(sources, "_write_cache", lambda *a: pytest.fail("cache rewritten"))
    assert_same(load_cifar(root), first)


def test_cache_file_is_per_data_set_name(tmp_path: Path) -> None:
    load_cifar(write_image_folder(tmp_path, 1, 1, num_classes=2), name="cifar100")
    assert (tmp_path / "cifar100-uint8.pt").is_file()
    assert not (tmp_path / "cifar10-uint8.pt").exists()


def test_truncated_cache_is_an_error_naming_the_file(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, 2, 1, num_classes=2)
    load_cifar(root)
    cache = root / "cifar10-uint8.pt"
    cache.write_bytes(cache.read_bytes()[:1000])
    with pytest.raises(DataError, match="is corrupt") as err:
        load_cifar(root)
    assert str(cache) in str(err.value) and "delete it" in str(err.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"train_images": torch.zeros(2, 3, 32, 32, dtype=torch.float32)}, "train_images must be a uint8"),
        ({"test_images": torch.zeros(1, 32, 32, 3, dtype=torch.uint8)}, "test_images must be a uint8"),
        ({"train_labels": torch.tensor([0, 5])}, r"train_labels must lie in \[0, 2\)"),
        ({"test_labels": torch.tensor([0, 1])}, "test_labels must be an int64 tensor with one label per image"),
        ({"classes": []}, "classes must be a non-empty list"),
    ],
)
def test_cache_with_wrong_content_is_an_error(tmp_path: Path, change: dict, problem: str) -> None:
    good = synthetic_cifar(2, 1, num_classes=2)
    blob = {
        "train_images": good.train_images,
        "train_labels": good.train_labels,
        "test_images": good.test_images,
        "test_labels": good.test_labels,
        "classes": list(good.classes),
    }
    torch.save({**blob, **change}, tmp_path / "cifar10-uint8.pt")
    with pytest.raises(DataError, match=problem) as err:
        load_cifar(tmp_path)
    assert str(tmp_path / "cifar10-uint8.pt") in str(err.value)


@pytest.mark.parametrize("failing", ["write", "rename"])
def test_unwritable_folder_loads_without_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failing: str
) -> None:
    """Running as root here, so a read-only folder is simulated: creating or renaming the file fails."""
    root = write_image_folder(tmp_path, 2, 1, num_classes=2)

    def read_only(path: str, *args: object) -> None:
        raise OSError(30, "Read-only file system", str(path))

    if failing == "write":
        monkeypatch.setattr(sources.torch, "save", read_only)
    else:
        monkeypatch.setattr(files.os, "replace", read_only)
    with caplog.at_level(logging.WARNING, logger=sources.__name__):
        arrays = load_cifar(root)
    assert_form(arrays, 4, 2)
    assert "could not write cache" in caplog.text and "Read-only file system" in caplog.text
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]  # no cache, no temporary file


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder_loads_without_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_image_folder(tmp_path, 1, 1, num_classes=2)
    root.chmod(0o555)
    try:
        with caplog.at_level(logging.WARNING, logger=sources.__name__):
            assert_form(load_cifar(root), 2, 2)
    finally:
        root.chmod(0o755)
    assert "could not write cache" in caplog.text
    assert not (root / "cifar10-uint8.pt").exists()


# --- torchvision archive and download -----------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_torchvision_archive_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    write_torchvision_archive(tmp_path, num_train=23, num_test=7, name=name)
    trust_torchvision_files(monkeypatch, tmp_path, name)
    arrays = load_cifar(tmp_path, name=name)
    num_classes = 10 if name == "cifar10" else 100
    assert_form(arrays, 23, 7)
    assert arrays.classes == tuple(class_names(num_classes))
    assert torch.equal(arrays.train_images, chw(fake_images(23, seed=0)))
    assert torch.equal(arrays.test_images, chw(fake_images(7, seed=1)))
    assert arrays.train_labels.tolist() == fake_labels(23, num_classes).tolist()
    assert arrays.test_labels.tolist() == fake_labels(7, num_classes).tolist()
    assert (tmp_path / f"{name}-uint8.pt").is_file()


def test_corrupted_archive_member_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_torchvision_archive(tmp_path, 10, 5)
    trust_torchvision_files(monkeypatch, tmp_path)
    member = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    data = bytearray(member.read_bytes())
    data[-10] ^= 0xFF
    member.write_bytes(bytes(data))
    with pytest.raises(DataError, match="fail their MD5 check") as err:
        load_cifar(tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value) and "data.download=true" in str(err.value)


def test_archive_folder_of_other_data_set_is_not_used(tmp_path: Path) -> None:
    write_torchvision_archive(tmp_path, 10, 5, name="cifar100")
    with pytest.raises(DataError, match="no cifar10 data found"):
        load_cifar(tmp_path, name="cifar10")


@pytest.fixture
def served_tarball(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake official cifar-10-python.tar.gz whose MD5 sums torchvision trusts."""
    server = tmp_path / "server"
    write_torchvision_archive(server, num_train=15, num_test=5)
    tarball = write_torchvision_tarball(server)
    trust_torchvision_files(monkeypatch, server)
    return tarball


def test_download_fetches_verifies_and_reads_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_tarball: Path
) -> None:
    requested = serve_downloads(monkeypatch, served_tarball)
    root = tmp_path / "data"
    arrays = load_cifar(root, download=True)
    assert requested == [DATASET_CLASSES["cifar10"].url]
    assert (root / "cifar-10-python.tar.gz").is_file() and (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert torch.equal(arrays.train_images, chw(fake_images(15, seed=0)))
    assert arrays.test_labels.tolist() == fake_labels(5, 10).tolist()
    assert (root / "cifar10-uint8.pt").is_file()


def test_download_skipped_when_files_are_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_tarball: Path
) -> None:
    requested = serve_downloads(monkeypatch, None)
    arrays = load_cifar(served_tarball.parent, download=True)
    assert requested == []
    assert_form(arrays, 15, 5)


def test_corrupted_download_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_tarball: Path) -> None:
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(served_tarball.read_bytes() + b"\0")
    serve_downloads(monkeypatch, damaged)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="fails its MD5 check") as err:
        load_cifar(root, download=True)
    assert str(root / "cifar-10-python.tar.gz") in str(err.value) and "delete it" in str(err.value)


def test_download_without_network_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_downloads(monkeypatch, None)
    with pytest.raises(DataError, match="could not download https://www.cs.toronto.edu/") as err:
        load_cifar(tmp_path / "data", download=True)
    assert "network is unreachable" in str(err.value) and "by hand" in str(err.value)


# --- bad arguments ------------------------------------------------------------------------


def test_missing_root_mentions_root_and_download(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"data root {missing} does not exist") as err:
        load_cifar(missing)
    message = str(err.value)
    assert "data.root=" in message and "data.download=true" in message
    assert "train/<class>" in message and "cifar-10-batches-py" in message


def test_root_without_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"no cifar100 data found in {tmp_path}.*cifar-100-python"):
        load_cifar(tmp_path, name="cifar100")


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data set name 'mnist'; valid names are cifar10, cifar100"):
        load_cifar(tmp_path, name="mnist")


# --- synthetic ----------------------------------------------------------------------------


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
