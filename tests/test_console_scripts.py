"""The installed commands resnet-cifar-train, -evaluate, -report and -export do what
`python -m resnet_cifar.train` and the others do (fresh processes: the commands are under test)."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from commands import assert_ok, run_command
from run_outputs import read_json
from tiny_runs import TINY_SYNTHETIC_RUN

SCRIPTS = {
    "resnet-cifar-train": "resnet_cifar.train:main",
    "resnet-cifar-evaluate": "resnet_cifar.evaluate:main",
    "resnet-cifar-report": "resnet_cifar.report.__main__:main",
    "resnet-cifar-export": "resnet_cifar.export:main",
}


def script(name: str) -> Path:
    """The command as this environment installed it, beside its Python."""
    return Path(sys.executable).parent / name


def test_the_package_declares_the_four_commands() -> None:
    declared = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name in SCRIPTS}
    assert declared == SCRIPTS


@pytest.mark.slow
def test_train_evaluate_report_and_export_commands_run_as_modules(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "one"
    assert_ok(run_command([script("resnet-cifar-train"), *TINY_SYNTHETIC_RUN, f"hydra.run.dir={run_dir}"], tmp_path))
    assert read_json(run_dir / "metrics.json")["steps"] == 20
    # The same job name (and so log file name) as python -m resnet_cifar.train.
    assert yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["job"]["name"] == "train"

    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert_ok(run_command([script("resnet-cifar-evaluate"), f"ckpt_path={checkpoint}"], tmp_path))
    assert "test_err" in read_json(checkpoint.with_suffix(".eval.json"))

    report = assert_ok(run_command([script("resnet-cifar-report"), tmp_path / "runs", "--no-responses"], tmp_path))
    assert report.stdout.strip() == f"report: {tmp_path / 'runs' / 'report.md'}"

    exported = assert_ok(run_command([script("resnet-cifar-export"), checkpoint, tmp_path / "exported"], tmp_path))
    assert exported.stdout.strip() == f"exported: {tmp_path / 'exported'}"
    assert sorted(path.name for path in (tmp_path / "exported").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
