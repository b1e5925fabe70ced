"""Checkpoints that train (``ckpt_path=``, resuming) and evaluate refuse with one clear message:
one that does not exist, cannot be read, carries a pickle payload (refused without running it,
and without harming the run folder it was resumed into) or holds a network of another depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crafted_checkpoints import files_of
from tiny_runs import evaluation_refusal, refusal


class CodeOnLoad:
    """Unpickling this runs code: it creates ``marker`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def write_pickle_payload(path: Path, marker: Path) -> Path:
    """A checkpoint-like file whose unpickling would create ``marker``; checked to really do so."""
    torch.save({"state_dict": {}, "hyper_parameters": {"payload": CodeOnLoad(marker)}}, path)
    torch.load(path, weights_only=False)  # the unsafe load the project must never do
    assert marker.exists(), "the payload must work, or the test proves nothing"
    marker.unlink()
    return path


def checkpoint_refusal(command: str, tmp_path: Path, checkpoint: Path | str, run_dir: Path | None = None) -> str:
    """The message of ``<command> ckpt_path=<checkpoint>`` (train: in ``run_dir``), which must be refused."""
    if command == "train":
        return refusal(tmp_path, f"ckpt_path={checkpoint}", run_dir=run_dir)
    return evaluation_refusal(checkpoint)


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_checkpoint(tmp_path: Path, command: str) -> None:
    message = checkpoint_refusal(command, tmp_path, "/nope.ckpt")
    for phrase in ("/nope.ckpt", "does not exist", "last.ckpt"):
        assert phrase in message, message


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_unreadable_checkpoint(tmp_path: Path, command: str) -> None:
    checkpoint = tmp_path / "random.ckpt"
    checkpoint.write_bytes(np.random.default_rng(1).bytes(4096))
    message = checkpoint_refusal(command, tmp_path, checkpoint)
    for phrase in (str(checkpoint), "cannot be read", "another checkpoint"):
        assert phrase in message, message
    assert "refused" not in message, "a damaged file is not a refused payload"
    assert "weights_only" not in message, "no advice from torch to load files unsafely"


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_pickle_payload_checkpoint_refused_without_running_it(tmp_path: Path, finished_run: Path, command: str) -> None:
    marker = tmp_path / "payload_ran"
    checkpoint = write_pickle_payload(tmp_path / "payload.ckpt", marker)
    before = files_of(finished_run)
    # Resuming into a finished run's directory must not harm it either.
    message = checkpoint_refusal(command, tmp_path, checkpoint, run_dir=finished_run)
    for phrase in (str(checkpoint), "refused", "source you trust"):
        assert phrase in message, message
    assert "weights_only" not in message, "no advice from torch to load files unsafely"
    assert not marker.exists(), "the checkpoint's code ran"
    assert files_of(finished_run) == before


def test_train_resuming_a_checkpoint_of_another_depth(tmp_path: Path, finished_run: Path) -> None:
    checkpoint = finished_run / "checkpoints" / "last.ckpt"
    message = refusal(tmp_path, "model.depth=14", f"ckpt_path={checkpoint}")
    for phrase in (str(checkpoint), "depth=8", "depth=14"):
        assert phrase in message, message
    assert not list((tmp_path / "run").rglob("*.ckpt"))
