"""The launchers: several jobs at once on one machine, the submitit (SLURM) path run locally,
the SLURM and Ray configs, and round-robin GPU pinning. That the plugins cost nothing to other
Hydra apps is in test_hydra_plugins.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from commands import assert_ok, describe, run_cli, run_command
from resnet_cifar.launch import gpu_pinning
from resnet_cifar.train import compose_config
from run_outputs import read_json
from tiny_runs import TINY_SYNTHETIC_RUN

TINY_SWEEP = (*TINY_SYNTHETIC_RUN, "trainer.max_steps=4", "scheduler.milestones=[2,3]", "~callbacks.progress_bar")


def finished_jobs(sweep_dir: Path) -> list[Path]:
    return sorted(metrics.parent for metrics in sweep_dir.glob("*/metrics.json"))


def event_file_pids(job: Path) -> set[str]:
    """The process ids in a job's TensorBoard file names (events.out.tfevents.<time>.<host>.<pid>.<n>)."""
    return {path.name.split(".")[-2] for path in job.glob("events.out.tfevents.*")}


@pytest.mark.slow
def test_parallel_launcher_runs_jobs_in_their_own_processes(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    completed = run_cli(
        "train",
        "-m",
        *TINY_SWEEP,
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path / "cwd",
    )
    assert_ok(completed)
    jobs = finished_jobs(sweep_dir)
    assert [job.name.split("seed=")[1].split(",")[0] for job in jobs] == ["0", "1"]
    for job in jobs:
        assert read_json(job / "metrics.json")["steps"] == 4
        assert (job / "checkpoints" / "last.ckpt").is_file()
    pids = [event_file_pids(job) for job in jobs]
    assert all(len(p) == 1 for p in pids) and pids[0] != pids[1]  # two worker processes


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    completed = run_cli(
        "train",
        "-m",
        *TINY_SWEEP,
        "hydra/launcher=submitit_local",
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path / "cwd",
    )
    assert_ok(completed)
    jobs = finished_jobs(sweep_dir)
    assert len(jobs) == 2
    for job in jobs:
        assert read_json(job / "metrics.json")["steps"] == 4
    assert (sweep_dir / ".submitit").is_dir()  # submitit's own job folders and logs


def launcher_config(*overrides: str) -> OmegaConf:
    compose_config(overrides)
    return HydraConfig.get()


def test_slurm_launcher_follows_the_trainer() -> None:
    hydra = launcher_config(
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.accelerator=gpu",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=600",
    )
    launcher = hydra.launcher
    assert launcher._target_ == "hydra_plugins.resnet_cifar.slurm_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)
    assert (launcher.partition, launcher.timeout_min) == ("gpu", 600)
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0  # requeued on timeout/preemption
    single = launcher_config("hydra/launcher=slurm").launcher  # accelerator auto: a GPU job on a cluster
    assert (single.nodes, single.gpus_per_node, single.tasks_per_node) == (1, 1, 1)


def test_slurm_launcher_asks_for_gpus_only_for_gpu_jobs() -> None:
    for overrides in (["experiment=smoke"], ["trainer=cpu"], ["trainer=ddp", "trainer.accelerator=cpu"]):
        launcher = launcher_config("hydra/launcher=slurm", *overrides).launcher
        assert launcher.gpus_per_node is None, overrides
    assert launcher.tasks_per_node == 2  # CPU DDP: still one task per process
    assert launcher_config("hydra/launcher=slurm", "trainer=gpu").launcher.gpus_per_node == 1


def test_a_slurm_jobs_result_is_read_through_public_api(tmp_path: Path) -> None:
    import submitit
    from hydra.core.utils import JobReturn, JobStatus
    from submitit.core.utils import cloudpickle_dump

    from resnet_cifar.launch.cluster_jobs import failed_result, job_error
    from resnet_cifar.launch.slurm import job_return

    def finished(job_id: str, outcome: str, value: object) -> submitit.SlurmJob:
        """A job whose result file submitit's job function wrote: ("success", its return) or ("error", a trace)."""
        job = submitit.SlurmJob(folder=tmp_path, job_id=job_id)
        cloudpickle_dump((outcome, value), job.paths.result_pickle)
        return job

    completed = JobReturn(overrides=["seed=0"], status=JobStatus.COMPLETED)
    completed.return_value = 7.5
    result = job_return(finished("11", "success", completed), ["seed=0"])
    assert (result.status, result.return_value) == (JobStatus.COMPLETED, 7.5)
    # A training run that failed (Hydra's run_job caught its error), and a job whose function raised.
    failed = job_return(finished("12", "success", failed_result(["seed=1"], ValueError("loss is nan"))), ["seed=1"])
    assert failed.status == JobStatus.FAILED and failed.overrides == ["seed=1"]
    assert job_error(failed).startswith("JobFailed: SLURM job 12 failed: ValueError: loss is nan (log: ")
    raised = job_return(finished("13", "error", "Traceback (most recent call last):\nKeyError: 'x'"), ["seed=2"])
    assert "SLURM job 13 failed: " in job_error(raised) and "KeyError: 'x'" in job_error(raised)


def test_slurm_launcher_is_a_plugin_with_submitits_options() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
    from omegaconf import OmegaConf

    # Hydra imports the plugin modules itself (its own module objects): compare by name.
    launchers = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Launcher)}
    assert "hydra_plugins.resnet_cifar.slurm_launcher.SlurmLauncher" in launchers
    ours = set(launcher_config("hydra/launcher=slurm").launcher)
    submitits = set(OmegaConf.structured(SlurmQueueConf))
    assert submitits <= ours, "conf/hydra/launcher/slurm.yaml lists every key of hydra-submitit-launcher"
    assert ours - submitits == {
        "progress_every_s",
        "poll_s",
        "end_grace_s",
        "srun_args",
    }  # srun_args: submitit's slurm_srun_args


def test_slurm_refusals_name_the_key_to_change() -> None:
    from resnet_cifar.launch.slurm import refusal_message

    gres = refusal_message("sbatch: error: Invalid generic resource (gres) specification")
    assert gres.startswith(
        "SLURM refused the jobs: Invalid generic resource (gres) specification. Change hydra.launcher.gpus_per_node"
    )
    assert refusal_message("sbatch: error: invalid partition specified: big").endswith(
        "Change hydra.launcher.partition"
    )
    assert "hydra.launcher.cpus_per_task" in refusal_message(
        "sbatch: error: Batch job submission failed: Requested node configuration is not available"
    )


def test_ray_launcher_asks_for_the_trainers_gpus() -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as PluginRayLauncher

    from resnet_cifar.launch.ray import RayLauncher

    for overrides, gpus in (
        (["experiment=smoke"], None),
        (["trainer=ddp", "trainer.accelerator=cpu"], None),
        (["trainer=gpu"], 1),
        (["trainer=ddp", "trainer.devices=4"], 4),
        ([], 1),
    ):  # accelerator auto: a GPU job
        launcher = launcher_config("hydra/launcher=ray_cluster", *overrides).launcher
        assert launcher._target_ == "hydra_plugins.resnet_cifar.ray_cluster_launcher.RayClusterLauncher"
        assert launcher.ray.remote.num_gpus == gpus, overrides
        assert launcher.ray.remote.max_retries > 0  # jobs of a lost node run again
    # What the plugin builds when a sweep uses it: hydra-ray-launcher's launcher, extended.
    assert issubclass(RayLauncher, PluginRayLauncher)


def test_the_ray_launcher_without_ray_says_how_to_install_it(tmp_path: Path) -> None:
    # The train command with Ray and hydra-ray-launcher made impossible to import.
    without_ray = (
        "import runpy, sys; sys.modules.update(dict.fromkeys(['ray', 'hydra_plugins.hydra_ray_launcher'])); "
        "runpy.run_module('resnet_cifar.train', run_name='__main__')"
    )
    completed = run_command(
        [
            sys.executable,
            "-c",
            without_ray,
            "-m",
            "hydra/launcher=ray_cluster",
            *TINY_SWEEP,
            "seed=0",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    assert completed.returncode == 2, describe(completed)
    assert "Traceback" not in completed.output
    assert (
        completed.stderr.strip().splitlines()[-1]
        == "error: hydra/launcher=ray_cluster needs Ray and hydra-ray-launcher: pip install -e '.[ray]'"
    )


@pytest.mark.slow
def test_ray_launcher_refuses_multinode_jobs_and_dead_addresses(tmp_path: Path) -> None:
    for overrides, says, fix in (
        (
            ["trainer=ddp", "trainer.num_nodes=2"],
            "error: job #0 asks for trainer.num_nodes=2, but hydra/launcher=ray_cluster runs each job on one node",
            "use trainer.num_nodes=1 with trainer.devices up to a node's GPUs, "
            "or hydra/launcher=slurm for jobs across nodes",
        ),
        (
            [],
            "error: no Ray cluster answers at hydra.launcher.ray.init.address=127.0.0.1:1 (",
            "give its address: hydra.launcher.ray.init.address=auto",
        ),
    ):
        completed = run_command(
            [
                sys.executable,
                "-m",
                "resnet_cifar.train",
                "-m",
                "hydra/launcher=ray_cluster",
                *TINY_SWEEP,
                *overrides,
                "hydra.launcher.ray.init.address=127.0.0.1:1",
                f"hydra.sweep.dir={tmp_path / 'sweep'}",
            ],
            tmp_path,
        )
        assert completed.returncode == 2, describe(completed)
        assert "Traceback" not in completed.output
        last = completed.stderr.strip().splitlines()[-1]
        assert last.startswith(says) and fix in last, last


def test_parallel_launcher_config() -> None:
    hydra = launcher_config("hydra/launcher=parallel", "hydra.launcher.n_jobs=3")
    assert hydra.launcher._target_.endswith("JoblibLauncher") and hydra.launcher.n_jobs == 3
    assert hydra.callbacks.pin_gpus._target_ == "resnet_cifar.launch.gpu_pinning.PinGpuRoundRobin"
    assert "pin_gpus" not in launcher_config().get("callbacks", {})  # the default launcher pins nothing


def pinned(job_num: int, callback: gpu_pinning.PinGpuRoundRobin) -> str | None:
    import os

    callback.on_job_start(config=OmegaConf.create({"hydra": {"job": {"num": job_num}}}))
    return os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.fixture
def pinning_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No GPU variables set, and both variables the callback writes restored after the test:
    ``delenv`` alone records nothing for an absent variable, so what the callback set would leak
    into the tests that run later in this process (and into their subprocesses' environment)."""
    for name in (gpu_pinning.ALL_GPUS_VARIABLE, "CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def test_gpu_pinning_is_round_robin_over_the_visible_gpus(pinning_environment: pytest.MonkeyPatch) -> None:
    monkeypatch = pinning_environment
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")
    callback = gpu_pinning.PinGpuRoundRobin()
    assert [pinned(num, callback) for num in range(7)] == ["3", "5", "6", "3", "5", "6", "3"]


def test_gpu_pinning_does_nothing_without_gpus_or_when_disabled(pinning_environment: pytest.MonkeyPatch) -> None:
    monkeypatch = pinning_environment
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pinned(1, gpu_pinning.PinGpuRoundRobin()) == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert pinned(1, gpu_pinning.PinGpuRoundRobin(enabled=False)) == "0,1"
