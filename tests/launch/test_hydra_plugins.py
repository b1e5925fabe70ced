"""The project's Hydra plugins (src/hydra_plugins/resnet_cifar/) cost nothing to the other Hydra
apps of the environment: Hydra imports every plugin module at every app's start, so those modules
import Hydra only, change nothing in Hydra's global state, and leave the stock plugins' configs
(hydra-ray-launcher's hydra/launcher=ray) as they are. Each app runs as a fresh interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from commands import assert_ok, describe, run_command

# A Hydra app of a user's own, in the same environment as the project.
USERS_APP = """\
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    heavy = {"torch", "lightning", "pytorch_lightning", "resnet_cifar", "optuna", "ray", "submitit"}
    print("imported:", sorted({name.split(".")[0] for name in sys.modules} & heavy))


if __name__ == "__main__":
    main()
"""
# What Hydra holds after its plugin scan: every config of its ConfigStore and every plugin class.
HYDRAS_STATE = """\
import sys

if sys.argv[1] == "without":  # the project's plugins made impossible to import: as if not installed
    sys.modules["hydra_plugins.resnet_cifar"] = None
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.plugin import Plugin


def entries(node, path=""):
    for name, value in sorted(node.items()):
        if isinstance(value, dict):
            yield from entries(value, f"{path}{name}/")
        else:
            yield f"{path}{name} {value.provider} {value.node}"


names = sorted(f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Plugin))
print(*entries(ConfigStore.instance().repo), sep="\\n")
print(*(name for name in names if not name.startswith("hydra_plugins.resnet_cifar.")), sep="\\n")
"""
OURS = (
    "slurm_launcher.SlurmLauncher",
    "ray_cluster_launcher.RayClusterLauncher",
    "optuna_study_sweeper.OptunaStudySweeper",
)


@pytest.fixture
def users_app(tmp_path: Path) -> Path:
    app = tmp_path / "app" / "my_app.py"
    app.parent.mkdir()
    app.write_text(USERS_APP)
    return app


def test_another_apps_start_imports_none_of_the_project(users_app: Path) -> None:
    completed = assert_ok(run_command([sys.executable, users_app, "hydra.run.dir=run"], users_app.parent))
    assert completed.stdout.splitlines()[-1] == "imported: []", describe(completed)
    assert completed.stderr == ""


def test_the_project_changes_nothing_in_hydras_state(tmp_path: Path) -> None:
    script = tmp_path / "state.py"
    script.write_text(HYDRAS_STATE)
    with_ours, without = (
        assert_ok(run_command([sys.executable, script, which], tmp_path)).stdout for which in ("with", "without")
    )
    assert with_ours == without and "hydra/launcher/ray.yaml" in with_ours


def test_hydra_finds_the_projects_plugins() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.plugin import Plugin

    found = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Plugin)}
    assert {f"hydra_plugins.resnet_cifar.{name}" for name in OURS} <= found


def test_another_apps_ray_launcher_is_hydra_ray_launchers(users_app: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    command = [sys.executable, users_app, "hydra/launcher=ray", "--cfg", "hydra", "--package", "hydra.launcher"]
    completed = assert_ok(run_command(command, users_app.parent))
    assert "_target_: hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher" in completed.stdout
    assert completed.stderr == ""


@pytest.mark.parametrize("launcher", ["ray_cluster", "slurm", "parallel"])
def test_the_projects_launchers_compose_without_a_warning(tmp_path: Path, launcher: str) -> None:
    # Hydra's deprecated matching of a config with a stored schema of the same name would warn here.
    command = [sys.executable, "-m", "resnet_cifar.train", f"hydra/launcher={launcher}", "--cfg", "hydra"]
    completed = assert_ok(run_command(command, tmp_path))
    assert completed.stderr == "", describe(completed)


def test_the_ray_launchers_earlier_name_works_with_one_warning(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "resnet_cifar.train", "hydra/launcher=ray", "--cfg", "hydra"]
    completed = assert_ok(run_command(command, tmp_path))
    assert completed.stderr.splitlines() == [
        "warning: hydra/launcher=ray is now hydra/launcher=ray_cluster; the old name will stop working in a future "
        "release"
    ]
    assert "_target_: hydra_plugins.resnet_cifar.ray_cluster_launcher.RayClusterLauncher" in completed.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_another_app_sweeps_on_ray_with_hydra_ray_launcher(ray_cluster: str, users_app: Path) -> None:
    sweep_dir = users_app.parent / "sweep"
    command = [
        sys.executable,
        users_app,
        "-m",
        "hydra/launcher=ray",
        f"hydra.launcher.ray.init.address={ray_cluster}",
        # hydra-ray-launcher 1.2.2 passes object_store_memory to ray.init unless it is given, and Ray
        # refuses it when joining a running cluster.
        "+hydra.launcher.ray.init.object_store_memory=null",
        "+hydra.launcher.ray.remote.num_cpus=1",
        f"hydra.sweep.dir={sweep_dir}",
        "+x=1,2",
    ]
    completed = assert_ok(run_command(command, users_app.parent, timeout=300))
    assert "Ray Launcher is launching 2 jobs" in completed.output, describe(completed)
    for job, value in (("0", "+x=1"), ("1", "+x=2")):  # each job ran, in a Ray task
        assert value in (sweep_dir / job / ".hydra" / "overrides.yaml").read_text()
