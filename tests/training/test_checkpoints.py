"""How runs read and write checkpoints: whole files, an earlier layout refused with one message, and
a resume that restores no path outside its run, whoever wrote the checkpoint."""

from __future__ import annotations

import errno
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from crafted_checkpoints import files_of, victims
from resnet_cifar.errors import CheckpointError
from resnet_cifar.training.checkpoint_io import RunCheckpointIO
from resnet_cifar.training.checkpoints import check_same_network, read_trained
from tiny_runs import TINY_SYNTHETIC_RUN, captured_log, run_training

MODEL = {"_target_": "resnet_cifar.models.cifar_resnet", "depth": 20, "shortcut": "A", "residual": True}
RUN = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=2")
BEST = "ModelCheckpoint{'monitor': 'val/err', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}"  # noqa: E501


def test_a_checkpoint_without_the_module_config_is_refused(tmp_path: Path) -> None:
    # Written before the module/ configs, when the steps were counted by a manual loop: resumed as
    # it is, Lightning would start again at step 0.
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}, "global_step": 500, "hyper_parameters": {"run_config": {"model": MODEL}}}, path)
    with pytest.raises(CheckpointError, match="older than its module/ configs .* train again"):
        read_trained(path)
    torch.save({"state_dict": {}, "hyper_parameters": {"run_config": {"model": MODEL, "module": {}}}}, path)
    check_same_network(read_trained(path), MODEL)


def test_a_checkpoint_of_another_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": {**MODEL, "depth": 8}}}, path)
    with pytest.raises(
        CheckpointError, match=r"holds model \(depth=8\) but this run is configured for model \(depth=20\)"
    ):
        check_same_network(read_trained(path), MODEL)


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    io = RunCheckpointIO(tmp_path)
    io.save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)

    def disk_full(obj, file):
        Path(file).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.fixture
def requests_seen(two_steps: Path) -> Iterator[tuple[str, list[str]]]:
    """The address of a web server on this machine that serves a checkpoint at any path, and the
    requests it answered."""
    seen: list[str] = []
    body = (two_steps / "checkpoints" / "best.ckpt").read_bytes()

    class Server(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - the name http.server calls
            seen.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            self.do_HEAD()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of two steps, to copy and resume."""
    run_dir = tmp_path_factory.mktemp("two_steps") / "run"
    run_training(run_dir, *RUN)
    return run_dir


def crafted_resume(two_steps: Path, tmp_path: Path, attack: str, address: str) -> tuple[Path, Path]:
    """A copy of ``two_steps`` whose last.ckpt's ModelCheckpoint state makes a resume ``delete`` a
    folder outside the run (through ``..``, which Lightning's own check of the folder does not
    resolve) or ``download`` a checkpoint and test it as the run's best; and the victim
    folder. The state names the copy's own folder, as it would in the run folder it came in."""
    folder = victims(tmp_path / "victims")
    run_dir = tmp_path / "run"
    shutil.copytree(two_steps, run_dir)
    checkpoints = run_dir / "checkpoints"
    outside = checkpoints / ".." / ".." / "victims"
    checkpoint = torch.load(checkpoints / "last.ckpt", weights_only=True)
    if attack == "delete":
        kept, score = str(outside / "keep"), torch.tensor(100.0)  # any new validation beats it: it is deleted
    else:
        kept, score = f"{address}/theirs.ckpt", torch.tensor(0.0)  # unbeaten: the run tests it as its best
    checkpoint["callbacks"][BEST] |= {
        "best_k_models": {kept: score},
        "kth_best_model_path": kept,
        "kth_value": score,
        "best_model_score": score,
        "best_model_path": kept,
        "dirpath": str(checkpoints),
    }
    torch.save(checkpoint, checkpoints / "last.ckpt")
    (run_dir / "metrics.json").unlink()
    return run_dir, folder


@pytest.mark.parametrize("attack", ["delete", "download"])
def test_a_resume_restores_no_path_outside_its_run(
    two_steps: Path, tmp_path: Path, requests_seen: tuple[str, list[str]], attack: str
) -> None:
    address, seen = requests_seen
    run_dir, folder = crafted_resume(two_steps, tmp_path, attack, address)
    before = files_of(folder)
    with captured_log() as messages:
        metrics = run_training(run_dir, *RUN, "trainer.max_steps=4")
    assert metrics["steps"] == 4 and metrics["resumed_from"] == 2
    assert files_of(folder) == before and not seen  # nothing deleted or overwritten, nothing downloaded
    assert Path(metrics["best_checkpoint"]).parent == run_dir / "checkpoints"
    (warning,) = [message for message in messages if "left out of the restored state" in message]
    assert (f"{address}/theirs.ckpt" if attack == "download" else "victims/keep") in warning


@pytest.mark.parametrize("attack", ["delete", "download"])
def test_lightnings_own_checkpoint_io_would_act_on_those_paths(
    two_steps: Path, tmp_path: Path, requests_seen: tuple[str, list[str]], attack: str
) -> None:
    """The same crafted runs resumed with Lightning's plain checkpoint IO: the attacks are real, and
    the test above would see them."""
    address, seen = requests_seen
    run_dir, folder = crafted_resume(two_steps, tmp_path, attack, address)
    shutil.rmtree(run_dir / ".hydra")  # the folder answers for this other config too
    plain_io = "trainer.plugins=[{_target_:lightning.pytorch.plugins.io.TorchCheckpointIO}]"
    metrics = run_training(run_dir, *RUN, "trainer.max_steps=4", plain_io)
    if attack == "delete":
        assert not (folder / "keep").exists()
    else:  # downloaded, and tested as the run's best checkpoint
        assert "GET /theirs.ckpt" in seen and metrics["best_checkpoint"] == f"{address}/theirs.ckpt"


def test_a_copied_run_folder_resumes_with_its_own_checkpoints(tmp_path: Path) -> None:
    """The paths a run folder's state records are of the folder it was saved in: copied elsewhere,
    they count as the copy's, so its best checkpoint is still tracked (best.ckpt, no best-v1.ckpt).
    An epoch is 8 steps: the best checkpoint of step 8 is in the state that last.ckpt saves at 10."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    run_training(original, *TINY_SYNTHETIC_RUN, "trainer.max_steps=10")
    shutil.copytree(original, copy)
    (copy / "metrics.json").unlink()
    with captured_log() as messages:
        metrics = run_training(copy, *TINY_SYNTHETIC_RUN, "trainer.max_steps=12")
    assert metrics["resumed_from"] == 10 and not [m for m in messages if "left out of the restored state" in m]
    assert sorted(path.name for path in (copy / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_finished_run_extended_keeps_its_one_best_checkpoint(tmp_path: Path) -> None:
    """The final checkpoint is saved at the last step, before the final validation; that
    validation's best must still be in its state. Here it is the run's only validation: extended
    to more steps, the run keeps tracking best.ckpt (no best-v1.ckpt beside it), and the best
    it tests is that of both attempts."""
    run_training(tmp_path, *TINY_SYNTHETIC_RUN, "trainer.max_steps=4")
    best_state = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["callbacks"][BEST]
    last_state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"][BEST]
    assert last_state["best_model_path"] == str(tmp_path / "checkpoints" / "best.ckpt")
    assert last_state["best_model_score"] == best_state["best_model_score"]
    metrics = run_training(tmp_path, *TINY_SYNTHETIC_RUN, "trainer.max_steps=6")
    assert metrics["resumed_from"] == 4
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_another_runs_checkpoint_starts_the_checkpoint_callbacks_afresh(two_steps: Path, tmp_path: Path) -> None:
    """``ckpt_path=`` of another run: its ModelCheckpoint state names that run's files, so a run in
    a new folder restores none of it (no best score without its file) and tracks its own best;
    the training state is restored whole. In its own folder the state is restored as saved."""
    last = two_steps / "checkpoints" / "last.ckpt"
    own = RunCheckpointIO(two_steps / "checkpoints").load_checkpoint(last)
    assert own["callbacks"][BEST]["best_model_path"] == str(two_steps / "checkpoints" / "best.ckpt")
    with captured_log() as messages:
        other = RunCheckpointIO(tmp_path / "new" / "checkpoints").load_checkpoint(last)
    assert BEST not in other["callbacks"] and other["callbacks"]["TrainingClock"] == own["callbacks"]["TrainingClock"]
    assert other["loops"] == own["loops"] and other["global_step"] == own["global_step"] == 2
    (warning,) = [message for message in messages if "left out of the restored state" in message]
    assert f"dirpath='{two_steps / 'checkpoints'}'" in warning and "starts afresh" in warning
