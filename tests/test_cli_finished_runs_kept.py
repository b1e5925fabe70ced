"""No bad input loses the work of a finished run: a rerun in its folder with another config is
refused before anything there changes, a folder answers only for its own config (more steps
resume it), configs composed from Python get folders of their own, and a run folder holding
symbolic links is refused without reading or writing through them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from commands import assert_usage_error, run_cli
from crafted_checkpoints import files_of, victims
from resnet_cifar.train import compose_config
from tiny_runs import TWO_STEPS, refusal, run_training


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
