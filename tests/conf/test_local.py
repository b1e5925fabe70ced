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
from hydra.core.hydra_config import HydraConfig

from commands import REPO, assert_ok, run_cli
from fake_cifar import write_image_folder
from resnet_cifar import CONFIG_DIR
from resnet_cifar.launch.study_names import exclude_shared_keys
from resnet_cifar.train import compose_config
from run_outputs import read_json
from tiny_runs import TINY_IMAGE_FOLDER_RUN

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
    cfg = compose_config([searchpath, "hydra/launcher=slurm", "logger=mlflow"])
    launcher = HydraConfig.get().launcher
    assert cfg.data.root == "/datasets/cifar10"
    assert (launcher.partition, launcher.account) == ("gpu", "lab")
    assert cfg.logger.mlflow.tracking_uri == "http://127.0.0.1:5000"
    compose_config([searchpath, "hydra/launcher=ray_cluster"])
    assert HydraConfig.get().launcher.ray.init.address == "ray://head:10001"


def test_the_command_line_wins_over_the_site_settings(searchpath: str) -> None:
    cfg = compose_config(
        [
            searchpath,
            "hydra/launcher=slurm",
            "logger=mlflow",
            "data.root=here",
            "hydra.launcher.partition=debug",
            "logger.mlflow.tracking_uri=sqlite:///x.db",
        ]
    )
    assert (cfg.data.root, HydraConfig.get().launcher.partition, cfg.logger.mlflow.tracking_uri) == (
        "here",
        "debug",
        "sqlite:///x.db",
    )


def test_site_settings_win_over_an_experiments_values(searchpath: str) -> None:
    # Site settings come last: experiment=smoke sets data=synthetic, the site its data root.
    assert compose_config([searchpath, "experiment=smoke"]).data.root == "/datasets/cifar10"


def test_without_a_site_file_the_defaults_hold() -> None:
    cfg = compose_config(["hydra/launcher=slurm"])
    launcher = HydraConfig.get().launcher
    assert cfg.data.root == "data" and launcher.partition is None and launcher.account is None
    compose_config(["hydra/launcher=ray_cluster"])
    assert HydraConfig.get().launcher.ray.init.address is None  # a cluster on this machine


def test_the_example_composes_and_sets_every_site_key() -> None:
    compose_config(["local=example", "hydra/launcher=slurm"])
    launcher = HydraConfig.get().launcher
    example = yaml.safe_load((CONFIG_DIR / "local" / "example.yaml").read_text())
    assert set(example["site"]) == set(compose_config(["local=example"]).site)  # the example shows every key
    assert (launcher.partition, launcher.account) == (
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
def test_a_sweep_and_evaluate_read_the_sites_data_root(tmp_path: Path) -> None:
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
