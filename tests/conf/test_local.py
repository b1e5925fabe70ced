"""This site's settings: conf/local/default.yaml (git-ignored), or the same file in a folder that
``--config-dir`` adds, applies to every command, sweep and DDP process; the command line wins.

The configs are composed in this process; the commands that take ``--config-dir`` run as processes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CONF, REPO, TINY_IMAGE_FOLDER_RUN, RunCli, assert_ok, compose_train, read_json
from fake_cifar import write_image_folder
from resnet_cifar.launch.study_names import exclude_shared_keys

SITE = {
    "data": {"root": "/datasets/cifar10"},
    "site": {
        "slurm_partition": "gpu",
        "slurm_account": "lab",
        "ray_address": "ray://head:10001",
        "mlflow_tracking_uri": "http://127.0.0.1:5000",
    },
}


def site_folder(folder: Path, settings: dict) -> Path:
    """A config folder holding local/default.yaml with ``settings``."""
    (folder / "local").mkdir(parents=True)
    (folder / "local" / "default.yaml").write_text("# @package _global_\n" + yaml.safe_dump(settings))
    return folder


@pytest.fixture
def searchpath(tmp_path: Path) -> str:
    """The override that adds a site folder holding SITE, as ``--config-dir`` does."""
    return f"hydra.searchpath=[file://{site_folder(tmp_path / 'site', SITE)}]"


def test_site_settings_reach_the_run_launchers_and_trackers(searchpath: str) -> None:
    cfg = compose_train([searchpath, "hydra/launcher=slurm", "logger=mlflow"])
    assert cfg.data.root == "/datasets/cifar10"
    assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.account) == ("gpu", "lab")
    assert cfg.logger.mlflow.tracking_uri == "http://127.0.0.1:5000"
    assert compose_train([searchpath, "hydra/launcher=ray"]).hydra.launcher.ray.init.address == "ray://head:10001"


def test_the_command_line_wins_over_the_site_settings(searchpath: str) -> None:
    cfg = compose_train(
        [
            searchpath,
            "hydra/launcher=slurm",
            "logger=mlflow",
            "data.root=here",
            "hydra.launcher.partition=debug",
            "logger.mlflow.tracking_uri=sqlite:///x.db",
        ]
    )
    assert (cfg.data.root, cfg.hydra.launcher.partition, cfg.logger.mlflow.tracking_uri) == (
        "here",
        "debug",
        "sqlite:///x.db",
    )


def test_site_settings_win_over_an_experiments_values(searchpath: str) -> None:
    # Site settings come last: experiment=smoke sets data=synthetic, the site its data root.
    assert compose_train([searchpath, "experiment=smoke"]).data.root == "/datasets/cifar10"


def test_without_a_site_file_the_defaults_hold() -> None:
    cfg = compose_train(["hydra/launcher=slurm"])
    assert cfg.data.root == "data" and cfg.hydra.launcher.partition is None and cfg.hydra.launcher.account is None
    assert compose_train(["hydra/launcher=ray"]).hydra.launcher.ray.init.address is None  # a cluster on this machine


def test_the_example_composes_and_sets_every_site_key() -> None:
    cfg = compose_train(["local=example", "hydra/launcher=slurm"])
    example = yaml.safe_load((CONF / "local" / "example.yaml").read_text())
    assert set(example["site"]) == set(compose_train(["local=example"]).site)  # the example shows every key
    assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.account) == (
        example["site"]["slurm_partition"],
        example["site"]["slurm_account"],
    )


def test_multirun_sh_names_jobs_the_same_with_a_site_folder() -> None:
    """./multirun.sh --config-dir DIR trainer=gpu: the shared override still stays out of the job names."""
    with_site = exclude_shared_keys(["--config-dir", "/etc/resnet-cifar", "trainer=gpu", "--config-dir=/x"])
    assert (
        with_site
        == exclude_shared_keys(["trainer=gpu"])
        == "hydra.job.config.override_dirname.exclude_keys=['ckpt_path','trainer']"
    )


def test_git_ignores_the_site_file() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "src/resnet_cifar/conf/local/default.yaml"], cwd=REPO, check=False
    )
    assert ignored.returncode == 0


@pytest.mark.slow
def test_a_sweep_and_evaluate_read_the_sites_data_root(run_cli: RunCli, tmp_path: Path) -> None:
    """No data.root on any command line: a sweep's job finds its data through the site file given
    with --config-dir (its DDP processes compose from the same folders: tests/launch/test_ddp.py);
    its checkpoint, taken to a site whose data lies elsewhere, is evaluated there.

    As cheap as the two commands allow: 4 training and 2 test images per class, one step, no
    validation split."""
    here, elsewhere = tmp_path / "data_here", tmp_path / "data_elsewhere"
    write_image_folder(here, 4, 2)
    sweep_dir = tmp_path / "sweep"
    completed = run_cli(
        "train",
        "-m",
        "--config-dir",
        str(site_folder(tmp_path / "site", {"data": {"root": str(here)}})),
        *TINY_IMAGE_FOLDER_RUN,
        "data.val_size=0",
        "data.batch_size=8",
        "data.eval_batch_size=20",
        "trainer.max_steps=1",
        "scheduler.milestones=[1]",
        "~callbacks.progress_bar",
        "~callbacks.input_preview",
        "~callbacks.model_summary",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path / "cwd",
    )
    assert_ok(completed)
    (job,) = [metrics.parent for metrics in sweep_dir.glob("*/metrics.json")]
    assert yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["data"]["root"] == str(here)

    shutil.move(here, elsewhere)  # another machine: the data at another path, named by its site file
    checkpoint = job / "checkpoints" / "last.ckpt"
    site = site_folder(tmp_path / "other_site", {"data": {"root": str(elsewhere)}})
    assert_ok(run_cli("evaluate", "--config-dir", str(site), f"ckpt_path='{checkpoint}'", cwd=tmp_path / "cwd"))
    evaluation = read_json(checkpoint.with_suffix(".eval.json"))
    assert evaluation["test_err"] == read_json(job / "metrics.json")["test_err"]
