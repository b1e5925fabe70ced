"""Data that cannot be read and output that cannot be written, refused with one clear message
that names the file and the fix: a missing data root, a corrupt cache or image, an output folder
that is a file; nothing is created in their place and no results are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fake_cifar import write_image_folder
from tiny_runs import TINY_IMAGE_FOLDER_RUN, refusal, refused, run_training


def test_missing_data_root_without_download(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    message = refused(lambda: run_training(tmp_path / "run", *TINY_IMAGE_FOLDER_RUN, f"data.root={missing}"))
    for phrase in (str(missing), "data.root", "data.download=true"):
        assert phrase in message, message
    assert not missing.exists(), "nothing may be created in place of the missing data"


def test_corrupt_cache_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    cache = root / "cifar10-uint8.pt"
    cache.write_bytes(np.random.default_rng(0).bytes(4096))
    message = refused(lambda: run_training(tmp_path / "run", *TINY_IMAGE_FOLDER_RUN, f"data.root={root}"))
    for phrase in (str(cache), "corrupt", "delete it"):
        assert phrase in message, message
    assert "weights_only" not in message, "no advice from torch to load files unsafely"


def test_corrupt_image_in_an_image_folder(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", 3, 1)
    broken = root / "train" / "cat" / "0001.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    message = refused(
        lambda: run_training(tmp_path / "run", *TINY_IMAGE_FOLDER_RUN, f"data.root={root}", "data.val_size=5")
    )
    assert str(broken) in message and "replace or remove it" in message, message
    assert not (root / "cifar10-uint8.pt").exists(), "no cache may be written from broken files"


def test_unwritable_output_is_refused_and_writes_no_results(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    checkpoints = (
        f"callbacks.model_checkpoint.dirpath={blocker}/checkpoints",
        "callbacks.model_checkpoint.every_n_train_steps=1",
    )
    message = refusal(tmp_path, *checkpoints)
    assert message.startswith(f"cannot write {blocker}"), message
    assert not (tmp_path / "run" / "metrics.json").exists()
