"""Reading CIFAR-10 and CIFAR-100 from torchvision's archive folders, and downloading the official
archive (served from a fake, no network): checked against MD5 sums, skipped when the files are
present, an error naming the file or URL when a check or the network fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fake_cifar import (
    DATASET_CLASSES,
    assert_form,
    chw,
    class_names,
    fake_images,
    fake_labels,
    serve_downloads,
    trust_torchvision_files,
    write_torchvision_archive,
    write_torchvision_tarball,
)
from resnet_cifar.data.sources import load_cifar
from resnet_cifar.errors import DataError


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
