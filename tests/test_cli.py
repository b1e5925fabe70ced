"""Every bad input gets one clear message (the problem and the fix), and no bad input costs the
work of a finished run.

The command line's side (:mod:`resnet_cifar.cli`): the project's own usage errors exit with 2 and
print one ``error: <message>`` line without a traceback; Hydra's errors (an unknown config key)
exit with 1 and print Hydra's message. A few tests run the commands as a user does to prove that;
the messages themselves are tested in this process: the training and evaluation functions raise
a :class:`resnet_cifar.errors.UsageError` whose text is what the command prints after ``error: ``.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from commands import describe, run_cli
from crafted_checkpoints import files_of, victims
from fake_cifar import write_image_folder
from resnet_cifar.cli import exit_on_usage_error
from resnet_cifar.errors import ConfigError, UsageError
from resnet_cifar.evaluate import compose_evaluation, evaluate
from resnet_cifar.train import compose_config
from tiny_runs import TINY_IMAGE_FOLDER_RUN, TINY_SYNTHETIC_RUN, run_training

USAGE_ERROR = 2
HYDRA_ERROR = 1
# Two steps of the smallest network on synthetic data.
TWO_STEPS = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=2")


def assert_usage_error(completed: subprocess.CompletedProcess, *phrases: str) -> str:
    """Exit status 2, exactly one ``error:`` line holding every phrase, and no traceback."""
    assert completed.returncode == USAGE_ERROR, describe(completed)
    assert "Traceback" not in completed.output, describe(completed)
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, describe(completed)
    assert errors[0] not in completed.stdout, "printed once, on stderr: " + describe(completed)
    for phrase in phrases:
        assert phrase in errors[0], f"{phrase!r} not in {errors[0]!r}"
    return errors[0]


def refused(call: Callable[[], Any]) -> str:
    """What the command would print after ``error: `` for the exception that ``call`` raises;
    fails unless it raises a usage error itself, as the Python API documents (the command prints
    it without a traceback)."""
    with pytest.raises(UsageError) as raised:
        call()
    return str(raised.value)


def refusal(tmp_path: Path, *overrides: str, run_dir: Path | None = None) -> str:
    """The message of a two-step run on synthetic data with ``overrides``, trained in ``run_dir``
    (default tmp_path/run) in this process, which must be refused."""
    return refused(lambda: run_training(run_dir or tmp_path / "run", *TWO_STEPS, *overrides))


def evaluation_refusal(checkpoint: Path | str, *overrides: str) -> str:
    """The message of ``evaluate ckpt_path=<checkpoint> <overrides>`` in this process, which must be refused."""
    return refused(lambda: evaluate(compose_evaluation([f"ckpt_path={checkpoint}", *overrides])))


def assert_no_results(run_dir: Path) -> None:
    """No checkpoint, no metrics.json and no DDP process's log in ``run_dir``."""
    assert not list(run_dir.rglob("*.ckpt")) and not (run_dir / "metrics.json").exists()
    assert not (run_dir / "train_rank1.log").exists(), "no DDP process may have started"


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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step run of depth 8 (its directory)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    run_training(run_dir, *TWO_STEPS)
    assert (run_dir / "metrics.json").is_file()
    return run_dir


# --- the commands: exit status, the error line, nothing written ---


def test_train_usage_error_is_one_line_exit_2_no_output(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    completed = run_cli("train", *TWO_STEPS, "model.depth=21", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    line = assert_usage_error(completed, "depth=21", "6n+2")
    assert {path.name for path in run_dir.rglob("*")} == {"train.log"}, "only the command's log may be written"
    logged = [entry for entry in (run_dir / "train.log").read_text().splitlines() if "error: " in entry]
    assert len(logged) == 1 and logged[0].endswith(line), "the run's log says why it holds no results"


def test_unknown_config_key_gets_hydras_message(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    completed = run_cli("train", *TWO_STEPS, "model.widht=3", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    assert completed.returncode == HYDRA_ERROR, describe(completed)
    assert "Traceback" not in completed.output, describe(completed)
    assert "Could not override 'model.widht'" in completed.output, describe(completed)
    assert "+model.widht=3" in completed.output  # Hydra's hint, for keys meant to be added


def test_evaluate_usage_error_is_one_line_and_exit_2(tmp_path: Path, finished_run: Path) -> None:
    checkpoint = finished_run / "checkpoints" / "last.ckpt"
    completed = run_cli("evaluate", f"ckpt_path={checkpoint}", "model.depth=14", cwd=tmp_path / "cwd")
    assert_usage_error(completed, str(checkpoint), "depth=8", "depth=14")
    assert not checkpoint.with_suffix(".eval.json").exists()


# --- configuration ---


def test_depth_not_of_the_form_6n_plus_2(tmp_path: Path) -> None:
    message = refusal(tmp_path, "model.depth=21")
    assert "depth=21" in message and "6n+2" in message and "20, 32, 44, 56, 110" in message
    assert not (tmp_path / "run").exists(), "a refused run leaves nothing, not even its config"


def test_unknown_shortcut(tmp_path: Path) -> None:
    message = refusal(tmp_path, "model.shortcut=C")
    assert "'C'" in message and "A, B" in message


def test_batch_not_divisible_by_ddp_world_size_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "data.batch_size=127")
    for phrase in ("data.batch_size=127", "2 processes", "multiple of 2"):
        assert phrase in message, message
    assert_no_results(tmp_path / "run")


@pytest.mark.parametrize(
    "overrides,phrases",
    [
        (
            ("module=whole_step", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"),
            ("module=whole_step", "DDP (2 processes", "use module=classifier"),
        ),
        (
            ("module=whole_step", "optimizer._target_=torch.optim.Adam", "~optimizer.momentum"),
            ("the optimizer is Adam", "optimizer=sgd", "module=classifier"),
        ),
        (("module=whole_step", "trainer.gradient_clip_val=1.0"), ("gradient clipping", "use module=classifier")),
        (
            ("module=whole_step", "module.lr_scheduler.interval=epoch"),
            ("step every 1 epoch", "module.lr_scheduler.interval=step", "use module=classifier"),
        ),
        (("trainer.gradient_clip_algorithm=sideways",), ("gradient_clip_algorithm", "sideways")),
        (("~callbacks.training_clock",), ("callbacks.training_clock is required", "metrics.json")),
    ],
    ids=["ddp", "not-sgd", "clipping", "epoch-interval", "unknown-clip-algorithm", "required-callback"],
)
def test_what_a_run_cannot_do_is_refused_before_training(
    tmp_path: Path, overrides: tuple[str, ...], phrases: tuple[str, ...]
) -> None:
    message = refusal(tmp_path, *overrides)
    for phrase in phrases:
        assert phrase in message, message
    assert_no_results(tmp_path / "run")


@pytest.mark.parametrize(
    "overrides", [(), ("module.lr_scheduler.interval=step",)], ids=["as-configured", "stepped-every-step"]
)
def test_whole_step_with_plateau_names_ways_out_that_train(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    """ReduceLROnPlateau steps on val/err, which the whole step's per-step scheduling would ask for
    before any validation: no module.lr_scheduler setting helps, so the message names what does."""
    message = refusal(tmp_path, "module=whole_step", "module.compile=false", "scheduler=plateau", *overrides)
    for phrase in (
        "module=whole_step",
        "ReduceLROnPlateau (scheduler=plateau)",
        "module=classifier",
        "scheduler=multistep",
    ):
        assert phrase in message, message
    assert "module.lr_scheduler" not in message, "no setting of module.lr_scheduler makes it work"
    assert_no_results(tmp_path / "run")
    ways_out = (
        ("module=classifier", "scheduler=plateau"),
        ("module=whole_step", "module.compile=false", "scheduler=multistep"),
    )
    for number, way_out in enumerate(ways_out):
        assert run_training(tmp_path / f"way_out_{number}", *TWO_STEPS, *way_out)["steps"] == 2


def test_callbacks_that_need_a_logger_name_both_ways_out(tmp_path: Path) -> None:
    message = refusal(tmp_path, "~logger.tensorboard")
    assert message == (
        "callbacks.lr_monitor (LearningRateMonitor) writes through a logger, and this run has no logger; keep one "
        "(logger=tensorboard, the default, or e.g. logger=csv), or remove the callback too: '~callbacks.lr_monitor'"
    )
    assert not (tmp_path / "run").exists()
    # Both ways out train; the callbacks that draw in TensorBoard (input_preview, tensorboard_layout)
    # write nothing without it.
    run_training(tmp_path / "csv", *TWO_STEPS, "logger=csv", "~logger.tensorboard")
    assert "lr" in (tmp_path / "csv" / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert run_training(tmp_path / "none", *TWO_STEPS, "~logger.tensorboard", "~callbacks.lr_monitor")["steps"] == 2
    for run in ("csv", "none"):
        assert not list((tmp_path / run).glob("events.*")), "no TensorBoard file without TensorBoard"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is that of a machine without a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one(tmp_path: Path, finished_run: Path) -> None:
    # The smoke experiment trains on the CPU; a setting on the command line comes last.
    message = refusal(tmp_path, "trainer.accelerator=gpu")
    assert message.startswith("trainer.accelerator=gpu (trainer=gpu) asks for a GPU, and this machine has none that ")
    for phrase in ("torch can use", "trainer=cpu", "the default trainer (trainer.accelerator=auto)"):
        assert phrase in message, message
    assert not (tmp_path / "run").exists()
    assert evaluation_refusal(finished_run / "checkpoints" / "last.ckpt", "trainer=gpu") == message


@pytest.mark.parametrize("given", [(), ("ckpt_path=???",), ("ckpt_path=",)], ids=["left-out", "missing", "empty"])
def test_evaluate_without_a_checkpoint_names_the_key_and_the_command(given: tuple[str, ...]) -> None:
    message = refused(lambda: evaluate(compose_evaluation(given)))
    assert message.startswith("ckpt_path is not set: evaluate tests a trained network"), message
    assert "python -m resnet_cifar.evaluate ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt" in message


def test_the_python_api_raises_the_projects_own_error(tmp_path: Path, finished_run: Path) -> None:
    """train() and evaluate() raise the UsageError itself, with the command's message: not Hydra's
    InstantiationException around one raised while building, nor Lightning's exception (whose
    trace stays attached as the cause)."""
    with pytest.raises(ConfigError, match=r"^depth=21 is not of the form 6n\+2"):
        run_training(tmp_path / "run", *TWO_STEPS, "model.depth=21")
    clip = "trainer.gradient_clip_algorithm=sideways"
    checkpoint = f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}"
    for call in (
        lambda: run_training(tmp_path / "run", *TWO_STEPS, clip),
        lambda: evaluate(compose_evaluation([checkpoint, clip])),
    ):
        with pytest.raises(UsageError, match="^`gradient_clip_algorithm` sideways is invalid") as raised:
            call()
        assert raised.value.__cause__ is not None, "Lightning's trace, for whoever debugs"


# --- data ---


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


# --- checkpoints ---


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


# --- no bad input loses finished work ---


@pytest.fixture(scope="module")
def failed_resume(
    tmp_path_factory: pytest.TempPathFactory, finished_run: Path
) -> tuple[subprocess.CompletedProcess, dict[str, str], dict[str, str]]:
    """A finished run's command rerun in (a copy of) its directory with another depth.

    It finds the run of another config there and must stop before anything there changes (the
    checkpoint, of another depth too, is not even read). A command, not a call: what Hydra
    writes into the run directory before the training function starts (its log, and its copy of
    the config unless ``hydra.output_subdir`` is null) happens only there. Returns the process and
    the files before and after (relative path -> hash).
    """
    tmp_path = tmp_path_factory.mktemp("failed_resume")
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    before = files_of(run_dir)
    completed = run_cli("train", *TWO_STEPS, "model.depth=14", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    return completed, before, files_of(run_dir)


def test_failed_resume_keeps_a_finished_runs_results(failed_resume) -> None:
    completed, before, after = failed_resume
    assert_usage_error(completed, "copy holds the run of another config (model.depth: 8 there, 14 here)")
    for name in ("metrics.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert after[name] == before[name], f"{name} changed"
    event_files = lambda files: {name for name in files if name.startswith("events.")}  # noqa: E731
    assert event_files(after) == event_files(before)


def test_failed_resume_keeps_a_finished_runs_config(failed_resume) -> None:
    _, before, after = failed_resume
    assert after[".hydra/config.yaml"] == before[".hydra/config.yaml"]


def test_a_finished_runs_folder_answers_only_for_its_own_config(tmp_path: Path, finished_run: Path) -> None:
    """Rerun there with other hyper-parameters, the folder neither returns its results for them nor
    changes; more steps or another data folder are a resume of the same run."""
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    before = files_of(run_dir)
    message = refusal(tmp_path, "seed=5", "optimizer.lr=0.02", run_dir=run_dir)
    assert message.startswith(
        f"{run_dir} holds the run of another config (data.seed: 0 there, 5 here, optimizer.lr: 0.1 there, 0.02 here, "
        "seed: 0 there, 5 here); nothing there was changed."
    )
    assert "choose another folder (leave out hydra.run.dir, or hydra.run.dir=<a new folder>)" in message
    assert files_of(run_dir) == before
    assert run_training(run_dir, *TWO_STEPS, "trainer.max_steps=3", "data.root=elsewhere")["resumed_from"] == 2


def test_a_run_without_validation_resumes_in_its_folder(tmp_path: Path) -> None:
    """Its config leaves out the best checkpoint (nothing to pick it with): so does its rerun's."""
    first = run_training(tmp_path / "run", *TWO_STEPS, "data.val_size=0")
    assert first["val_err"] is None
    assert run_training(tmp_path / "run", *TWO_STEPS, "data.val_size=0", "trainer.max_steps=3")["resumed_from"] == 2


def test_configs_composed_from_python_get_folders_of_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = (Path(compose_config(TWO_STEPS).paths.output_dir) for _ in range(2))
    assert first != second and first.parent == second.parent == tmp_path / "outputs" / "runs"
    named = compose_config(TWO_STEPS, output_dir=tmp_path / "mine").paths.output_dir
    assert named == str(tmp_path / "mine")  # a folder given is the folder used


def test_a_run_folder_holding_links_is_refused_and_nothing_outside_changes(tmp_path: Path, finished_run: Path) -> None:
    """A run folder from elsewhere, rerun in: nothing is read or written through its links (the log
    that Hydra opens first replaces its link with a file of its own)."""
    folder = victims(tmp_path / "victims")
    run_dir = tmp_path / "theirs"
    shutil.copytree(finished_run, run_dir)
    for name, target in (("train.log", folder / "notes.txt"), ("metrics.json", folder / "other.txt")):
        (run_dir / name).unlink(missing_ok=True)  # the run was trained in-process: it has no train.log
        (run_dir / name).symlink_to(target)
    shutil.rmtree(run_dir / ".hydra")
    (run_dir / ".hydra").symlink_to(folder, target_is_directory=True)
    before = files_of(folder)
    completed = run_cli("train", *TWO_STEPS, f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    assert_usage_error(completed, f"{run_dir} holds symbolic links (.hydra -> {folder}", "metrics.json -> ")
    assert files_of(folder) == before
    assert not (run_dir / "train.log").is_symlink() and not list(run_dir.glob("checkpoints/*-v1.ckpt"))


# --- output that cannot be written ---


def test_full_disk_is_reported_as_one_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    @exit_on_usage_error
    def task() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/last.ckpt")

    with pytest.raises(SystemExit) as exit_info:
        task()
    assert exit_info.value.code == USAGE_ERROR
    message = capsys.readouterr().err
    assert message.startswith("error: cannot write /runs/x/checkpoints/last.ckpt: No space left on device")
    assert "hydra.run.dir" in message


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
