"""Where load_cifar finds no source: a root that does not exist or holds no data, an unknown
data set name; each message says what to pass instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_cifar.data.sources import load_cifar
from resnet_cifar.errors import DataError


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
