"""The cache of decoded images (``<root>/<name>-uint8.pt``): written once and then used, one per
data set, checked when read (a damaged cache names its file), and skipped where the folder cannot
be written."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from fake_cifar import assert_form, assert_same, write_image_folder
from resnet_cifar import files
from resnet_cifar.data import sources
from resnet_cifar.data.sources import load_cifar, synthetic_cifar
from resnet_cifar.errors import DataError


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
