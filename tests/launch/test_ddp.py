"""DDP jobs: two CPU processes train as one (the end-to-end proof of DDP); inside sweeps a job
whose process fails fails alone (the sweep goes on, nothing is left running, the report lists
it), and a job leaves the sweep's threads and environment as it found them. Faults come from
probes.Fault (FAULTS=seed:rank:how,...)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from commands import REPO, assert_ok, describe, processes_of, run_command
from resnet_cifar.launch.ddp import DDPProcessFailed
from resnet_cifar.launch.study_names import exclude_shared_keys
from resnet_cifar.train import compose_config
from run_outputs import read_json
from tiny_runs import TINY_SYNTHETIC_RUN

# The tiny runs of tiny_runs.py as 2-process CPU jobs; a checkpoint (and divergence check) every 2 steps.
DDP_SWEEP = (
    *(arg for arg in TINY_SYNTHETIC_RUN if not arg.startswith("model.depth=")),
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.max_steps=6",
    "scheduler.milestones=[3,5]",
    "callbacks.model_checkpoint.every_n_train_steps=2",
    "~callbacks.progress_bar",
    "~callbacks.input_preview",
    "+callbacks.fault._target_=probes.Fault",
    "+hydra.callbacks.process_state._target_=probes.RecordProcessState",
)


@pytest.mark.slow
def test_ddp_keeps_the_global_batch_and_every_hook(tmp_path: Path) -> None:
    """Two CPU processes: the same steps as one process, half of each global batch each, every
    image once an epoch; a user's callback gets every per-batch hook of every step on each rank,
    with the gradients all-reduced by on_before_optimizer_step; one run directory for both."""
    runs, cwd, probes = tmp_path / "runs", tmp_path / "cwd", tmp_path / "probes"
    cwd.mkdir(), probes.mkdir()
    run_dir = runs / "ddp"
    probe = (
        "+callbacks.images._target_=probes.RecordTrainingImages",
        f"+callbacks.images.output_dir={probes}",
        "+callbacks.hooks._target_=probes.RecordBatchHooks",
        f"+callbacks.hooks.output_dir={probes}",
    )
    command = [
        *(sys.executable, "-m", "resnet_cifar.train", *TINY_SYNTHETIC_RUN, "data.synthetic_sizes=[500,100]"),
        *("trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_steps=30", *probe),
        f"hydra.run.dir={run_dir}",
    ]
    assert_ok(run_command(command, cwd, timeout=600))
    records = [json.loads((probes / f"probe_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2] and [r["steps"] for r in records] == [30, 30]
    assert read_json(run_dir / "metrics.json")["steps"] == 30
    for epoch in ("0", "1"):
        per_rank = [r["batches"][epoch] for r in records]
        assert [len(batches) for batches in per_rank] == [15, 15]
        # 450 images: 14 global batches of 32 and one of 2, each split in two halves.
        for step, (rank0, rank1) in enumerate(zip(*per_rank)):
            assert len(rank0) == len(rank1) == (16 if step < 14 else 1)
            assert not set(rank0) & set(rank1)
        seen = [index for batches in per_rank for batch in batches for index in batch]
        assert sorted(seen) == list(range(450)), f"epoch {epoch}: every training image exactly once"

    hooks = [read_json(probes / f"hooks_rank{rank}.json") for rank in (0, 1)]
    step = [
        "on_train_batch_start",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "on_train_batch_end",
    ]
    for rank_hooks in hooks:
        assert rank_hooks["calls"] == step * 30
        assert len(rank_hooks["gradient_norms"]) == 30 and all(norm > 0 for norm in rank_hooks["gradient_norms"])
    assert hooks[0]["gradient_norms"] == pytest.approx(hooks[1]["gradient_norms"], rel=1e-6)

    assert list(runs.iterdir()) == [run_dir]
    assert (run_dir / "train_rank1.log").is_file(), sorted(p.name for p in run_dir.iterdir())
    assert list(cwd.iterdir()) == []


def assert_process_state_restored(sweep_dir: Path) -> None:
    """Every record of one process (before and after each job) shows the same threads and environment."""
    records = [json.loads(line) for line in (sweep_dir / "process_state.jsonl").read_text().splitlines()]
    by_pid: dict[int, list[dict]] = {}
    for record in records:
        by_pid.setdefault(record["pid"], []).append(record)
    assert any(len(same) >= 4 for same in by_pid.values())  # a process that ran two jobs or more
    for same in by_pid.values():
        first = same[0]
        for record in same[1:]:
            assert record["threads"] == first["threads"], (first, record)
            changed = {
                k
                for k in first["environ"].keys() | record["environ"].keys()
                if first["environ"].get(k) != record["environ"].get(k)
            }
            assert not changed, f"job {record['job']} ({record['when']}) changed {sorted(changed)}"


def job_dir(sweep_dir: Path, seed: int) -> Path:
    (job,) = [path for path in sweep_dir.iterdir() if path.is_dir() and path.name.endswith(f"seed={seed}")]
    return job


def short_job_names(*overrides: str) -> str:
    """The override that names a sweep's jobs after what tells them apart (as multirun.sh does)."""
    return exclude_shared_keys(list(overrides))


@pytest.mark.slow
def test_basic_sweep_goes_on_past_failing_ddp_ranks(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "study"
    completed = run_command(
        ["bash", REPO / "multirun.sh", *DDP_SWEEP, f"hydra.sweep.dir={sweep_dir}"],
        tmp_path / "cwd",
        timeout=600,
        PYTHON=sys.executable,
        DEPTHS="8",
        SEEDS="0 1 2 3",
        FAULTS="0:0:sigkill,1:1:raise,2:1:nan",
        FAULT_AT_STEP="3",
    )
    assert completed.returncode != 0, describe(completed)
    assert not processes_of(sweep_dir), processes_of(sweep_dir)
    # The job after the failures ran to its end.
    finished = job_dir(sweep_dir, 3)
    assert json.loads((finished / "metrics.json").read_text())["steps"] == 6
    assert yaml.safe_load((finished / ".hydra" / "config.yaml").read_text())["seed"] == 3
    assert (finished / "train_rank1.log").is_file()
    assert list((tmp_path / "cwd").iterdir()) == []
    for seed in (0, 1, 2):
        assert not (job_dir(sweep_dir, seed) / "metrics.json").exists()
    output = completed.output
    assert re.search(r"DDP process local rank 0 \(pid \d+\) was killed by SIGKILL", output), describe(completed)
    # Rank 1 raised; rank 0 then fails in its next collective, often seen at the same poll, when
    # both are named (in rank order). Only this job's message has rank 1 exiting without a kill.
    assert re.search(
        r"DDP process (local rank 0 \(pid \d+\) exited with status 1; )?"
        r"local rank 1 \(pid \d+\) exited with status 1",
        output,
    ), describe(completed)
    assert "probe: rank 1 fails at step 3" in output
    # NaN on rank 1 only, at step 3 (the loss of step index 2): both ranks stop at the step-4 check.
    assert output.count("error: training diverged: the loss became NaN or infinite at step 2") == 2, describe(completed)
    kept = torch.load(job_dir(sweep_dir, 2) / "checkpoints" / "last.ckpt", weights_only=True)
    assert kept["global_step"] == 2
    report = (sweep_dir / "report.md").read_text()
    assert "4 runs: 1 finished, 3 failed or unfinished" in report
    for seed in (0, 1, 2):
        assert f"seed={seed} |" in report.split("## Failed or unfinished runs")[1]
    assert_process_state_restored(sweep_dir)


@pytest.mark.slow
def test_parallel_sweep_goes_on_past_failing_ddp_ranks(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    completed = run_command(
        [
            sys.executable,
            "-m",
            "resnet_cifar.train",
            "-m",
            "model.depth=8",
            *DDP_SWEEP,
            "seed=0,1,2",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep_dir}",
            short_job_names("model.depth=8", *DDP_SWEEP),
        ],
        tmp_path / "cwd",
        timeout=600,
        FAULTS="0:1:sigkill,1:0:raise",
    )
    assert completed.returncode != 0, describe(completed)
    assert not processes_of(sweep_dir), processes_of(sweep_dir)
    assert json.loads((job_dir(sweep_dir, 2) / "metrics.json").read_text())["steps"] == 6
    assert (
        not (job_dir(sweep_dir, 0) / "metrics.json").exists() and not (job_dir(sweep_dir, 1) / "metrics.json").exists()
    )
    # The rank that was killed is named first (rank 0 then fails in its next collective).
    assert re.search(r"DDP process local rank 1 \(pid \d+\) was killed by SIGKILL", completed.output), describe(
        completed
    )
    assert "probe: rank 0 fails at step 2" in completed.output
    assert_process_state_restored(sweep_dir)


def test_a_failed_rank_is_named_and_the_others_get_a_grace() -> None:
    import subprocess
    import time

    from resnet_cifar.launch.ddp import wait_for_ranks

    killed = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    failures = wait_for_ranks([killed, waiting], grace_s=1.0)
    assert time.monotonic() - started < 30
    assert waiting.poll() is None  # still running: run_ddp_processes stops it
    waiting.kill()
    waiting.wait()
    assert failures == [f"local rank 0 (pid {killed.pid}) was killed by SIGKILL"]
    assert issubclass(DDPProcessFailed, RuntimeError)  # not a UsageError: the sweep goes on


def test_a_job_leaves_environment_and_threads_as_it_found_them(monkeypatch) -> None:
    from resnet_cifar.launch.ddp import ddp_job

    monkeypatch.setenv("KEPT", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before, threads = dict(os.environ), torch.get_num_threads()
    try:
        with ddp_job():  # what Lightning's launcher and seed_everything do to the launching process
            os.environ.update(MASTER_PORT="12910", LOCAL_RANK="0", OMP_NUM_THREADS="1", PL_GLOBAL_SEED="3")
            del os.environ["KEPT"]
            torch.set_num_threads(threads + 1)
            raise RuntimeError("the job failed")
    except RuntimeError:
        pass
    assert dict(os.environ) == before and torch.get_num_threads() == threads


def test_ddp_processes_compose_from_the_added_config_dirs(tmp_path: Path) -> None:
    """A folder that the command line added (--config-dir, hydra.searchpath: a site's
    conf/local/default.yaml) is added to each DDP process's command too, in the job's directory."""
    from resnet_cifar.launch.ddp import child_command

    site = tmp_path / "site"
    compose_config([f"hydra.searchpath=[file://{site}]", "model.depth=8"], output_dir=tmp_path / "run")
    command, _ = child_command(1)
    assert command[:3] == [sys.executable, "-m", "resnet_cifar.train"] and "model.depth=8" in command
    assert f"hydra.searchpath=['file://{site}']" in command
    assert f'hydra.run.dir="{tmp_path / "run"}"' in command
    assert any(part.startswith("hydra.job.name=") and part.endswith("_rank1") for part in command)  # its own log
