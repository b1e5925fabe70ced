"""Searching hyper-parameters on the validation split: train returns optimized_metric (val_err by
default), and hparams_search=lr_wd runs Optuna over lr and weight decay."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import TINY_SYNTHETIC_RUN, RunCli, assert_ok, describe, read_json

SEARCH = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=3", "~callbacks.input_preview")


@pytest.fixture(scope="module")
def search(run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("search") / "sweep"
    completed = run_cli(
        "train",
        "-m",
        "hparams_search=lr_wd",
        *SEARCH,
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=sweep_dir.parent / "cwd",
    )
    assert_ok(completed)
    return sweep_dir


def trials(sweep_dir: Path) -> list[Path]:
    return sorted(path for path in sweep_dir.iterdir() if path.is_dir())


def test_two_trials_each_in_a_directory_of_its_own(search: Path) -> None:
    directories = trials(search)
    assert [path.name.split("_")[0] for path in directories] == ["0", "1"]
    configs = [yaml.safe_load((path / ".hydra" / "config.yaml").read_text()) for path in directories]
    lrs = [config["optimizer"]["lr"] for config in configs]
    assert len(set(lrs)) == 2 and all(0.01 <= lr <= 0.5 for lr in lrs)
    assert all(config["optimized_metric"] == "val_err" for config in configs)


def test_the_best_value_is_the_lowest_validation_error_of_the_trials(search: Path) -> None:
    results = yaml.safe_load((search / "optimization_results.yaml").read_text())
    metrics = {path: read_json(path / "metrics.json") for path in trials(search)}
    best_trial = min(metrics, key=lambda path: metrics[path]["val_err"])
    assert results["best_value"] == pytest.approx(metrics[best_trial]["val_err"])
    config = yaml.safe_load((best_trial / ".hydra" / "config.yaml").read_text())
    assert results["best_params"]["optimizer.lr"] == pytest.approx(config["optimizer"]["lr"])
    assert results["best_params"]["optimizer.weight_decay"] == pytest.approx(config["optimizer"]["weight_decay"])


@pytest.mark.parametrize(
    ("flags", "overrides", "message"),
    [
        (
            (),
            ("optimized_metric=accuracy",),
            "error: optimized_metric=accuracy is not a number in metrics.json; choose one of test_err,",
        ),
        (
            ("-m",),
            ("hparams_search=lr_wd", "data.val_size=0"),
            "error: optimized_metric=val_err needs a validation split, and data.val_size=0 has none",
        ),
    ],
)
def test_a_metric_the_run_cannot_return_is_refused_before_training(
    run_cli: RunCli, tmp_path: Path, flags: tuple[str, ...], overrides: tuple[str, ...], message: str
) -> None:
    completed = run_cli(
        "train",
        *flags,
        *SEARCH,
        *overrides,
        f"hydra.run.dir={tmp_path / 'run'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert completed.returncode == 2, describe(completed)
    assert [line for line in completed.output.splitlines() if line.startswith("error:")][0].startswith(message), (
        describe(completed)
    )
    assert "Traceback" not in completed.output
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("*.ckpt"))
