"""What every tracker shares: a tracker chosen whose package is not installed is refused with its
install command, runs that use neither MLflow nor W&B never import them, and the group a run is
filed under (MLflow's experiment, W&B's group) is the folder that holds it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from commands import assert_ok, describe, run_command
from resnet_cifar.cli import usage_error_in
from resnet_cifar.training.trackers import run_group
from tiny_runs import TRACKED_RUN, run_training


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_missing_tracker_is_refused_with_its_install_command(
    tracker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before any work, in one line that names the install command (the command prints
    it as its one ``error:`` line, exit status 2)."""
    monkeypatch.setitem(sys.modules, tracker, None)  # `import <tracker>` now fails as where it is not installed
    run_dir = tmp_path / "run"
    with pytest.raises(Exception) as raised:
        run_training(run_dir, *TRACKED_RUN, f"logger={tracker}")
    error = usage_error_in(raised.value)
    assert error is not None, raised.value
    assert f"pip install -e '.[{tracker}]'" in str(error) and "\n" not in str(error)
    assert not (run_dir / ".hydra").exists()


def test_runs_without_mlflow_or_wandb_do_not_import_them(tmp_path: Path) -> None:
    """Importing MLflow takes seconds: the commands and a default run's trainer leave both packages
    alone (in a fresh interpreter, where nothing imported them before)."""
    script = (
        "import sys\n"
        "from resnet_cifar.train import compose_config\n"
        "import resnet_cifar.evaluate, resnet_cifar.train\n"
        "from resnet_cifar.training.build import build_trainer\n"
        f"build_trainer(compose_config(['trainer.accelerator=cpu'], output_dir={str(tmp_path)!r}))\n"
        "print(sorted(name for name in ('mlflow', 'wandb') if name in sys.modules))\n"
    )
    completed = assert_ok(run_command([sys.executable, "-c", script], tmp_path))
    assert completed.stdout.strip().splitlines()[-1] == "[]", describe(completed)


def test_a_runs_group_is_the_folder_that_holds_it() -> None:
    cwd = "/home/me/lab"
    assert run_group("/home/me/lab/outputs/runs/2026-11-30_10-00-00", cwd) == "runs"
    assert run_group("/home/me/lab/outputs/multirun/2026-11-30_10-00-00/seed=0", cwd) == "multirun/2026-11-30_10-00-00"
    assert (
        run_group("/home/me/lab/outputs/study/2026-11-30_10-00-00/model.depth=20,seed=0", cwd)
        == "study/2026-11-30_10-00-00"
    )
    assert run_group("/home/me/lab/sweeps/depth/seed=0", cwd) == "sweeps/depth"
    assert run_group("/scratch/me/depth/seed=0", cwd) == "/scratch/me/depth"
