"""The paper study as one command: multirun.sh end to end, and a sweep killed and relaunched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from commands import REPO, assert_ok, describe, run_command
from resnet_cifar.report.responses import layer_response_stds
from resnet_cifar.report.runs import read_run
from run_outputs import read_json
from run_outputs import report_row as row
from tiny_runs import TINY_SYNTHETIC_RUN

MULTIRUN_SH = REPO / "multirun.sh"
# The tiny runs of tiny_runs.py for every depth of DEPTHS (multirun.sh sets model.depth itself).
TINY_STUDY = tuple(arg for arg in TINY_SYNTHETIC_RUN if not arg.startswith("model.depth="))


def multirun_sh(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return run_command(["bash", MULTIRUN_SH, *args], cwd, timeout=600, PYTHON=sys.executable, **env)


@pytest.mark.slow
def test_study_through_multirun_sh_ends_in_the_report(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "study"
    completed = multirun_sh(
        *TINY_STUDY,
        "trainer.max_steps=4",
        "~callbacks.progress_bar",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path / "cwd",
        DEPTHS="8 14",
        SEEDS="0 1",
        VARIANTS="resnet plain",
    )
    assert_ok(completed)
    assert f"report: {sweep_dir / 'report.md'}" in completed.stdout
    jobs = sorted(path.parent for path in sweep_dir.glob("*/metrics.json"))
    # Named after what tells the jobs apart; the arguments they share are left out of the names.
    assert [job.name for job in jobs] == [
        f"model.depth={depth},model={variant},seed={seed}"
        for depth in (14, 8)
        for variant in ("plain", "resnet")
        for seed in (0, 1)
    ]
    text = (sweep_dir / "report.md").read_text()
    for variant in ("resnet", "plain"):
        for depth in (8, 14):
            assert row(text, variant, depth)[3] == "2"
    assert "8 runs: 8 finished, 0 failed" in text
    for name in ("training_curves.png", "error_vs_depth.png", "layer_responses.png"):
        assert f"]({name})" in text
        with Image.open(sweep_dir / name) as image:
            assert image.width >= 500 and len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 50
    assert "not computed" not in text
    # Fig. 7: one std per 3x3 layer (the first conv and two per block: depth - 1), all positive.
    for job in jobs:
        stds = layer_response_stds(read_run(job), {})
        depth = int(job.name.split(",")[0].removeprefix("model.depth="))
        assert len(stds) == depth - 1 and all(0 < std < 100 for std in stds)


def test_multirun_sh_refuses_an_unknown_variant(tmp_path: Path) -> None:
    completed = multirun_sh(cwd=tmp_path, VARIANTS="resnet wide")
    assert completed.returncode == 2
    assert completed.stderr.startswith("error: VARIANTS has 'wide'")
    assert not (tmp_path / "outputs").exists()


# --- a sweep killed in the middle (SIGKILL, as a preemption would) and launched again ---

STEPS, CHECKPOINT_EVERY, KILLED_AT = 12, 5, 8


def snapshot(job: Path) -> dict[str, tuple[str, int]]:
    """Every file of a job (but its log, which each launch appends to): content hash and mtime."""
    return {
        str(path.relative_to(job)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(job.rglob("*"))
        if path.is_file() and path.name != "train.log"
    }


@pytest.mark.slow
def test_relaunched_sweep_keeps_finished_jobs_resumes_others(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "study"
    # The probe kills the sweep's process at step 8 of the seed-1 job, once (see probes.KillOnce).
    killer = "+callbacks.killer._target_=probes.KillOnce"
    command = (
        *TINY_STUDY,
        f"trainer.max_steps={STEPS}",
        f"callbacks.model_checkpoint.every_n_train_steps={CHECKPOINT_EVERY}",
        "~callbacks.progress_bar",
        killer,
        f"hydra.sweep.dir={sweep_dir}",
    )
    env = dict(
        DEPTHS="8",
        SEEDS="0 1 2",
        KILL_AT_STEP=str(KILLED_AT),
        KILL_SEED="1",
        KILL_MARKER=str(tmp_path / "killed"),
    )
    jobs = [sweep_dir / f"model.depth=8,model=resnet,seed={seed}" for seed in (0, 1, 2)]

    killed = multirun_sh(*command, cwd=tmp_path / "cwd", **env)
    assert killed.returncode != 0, describe(killed)
    assert f"run the same command with hydra.sweep.dir={sweep_dir} to resume it" in killed.stderr
    assert (jobs[0] / "metrics.json").is_file()
    assert not (jobs[1] / "metrics.json").exists() and (jobs[1] / "checkpoints" / "last.ckpt").is_file()
    assert not jobs[2].exists()
    report = (sweep_dir / "report.md").read_text()  # written after the kill too, listing the killed job
    assert "2 runs: 1 finished, 1 failed or unfinished" in report and f"| {jobs[1].name} |" in report
    finished_before = snapshot(jobs[0])

    relaunched = assert_ok(multirun_sh(*command, cwd=tmp_path / "cwd", **env))
    assert snapshot(jobs[0]) == finished_before, "the finished job was touched"
    metrics = [read_json(job / "metrics.json") for job in jobs]
    assert [m["steps"] for m in metrics] == [STEPS] * 3
    # The killed job resumed from its last periodic checkpoint: at most CHECKPOINT_EVERY steps lost.
    assert metrics[1]["resumed_from"] == KILLED_AT // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    assert KILLED_AT - metrics[1]["resumed_from"] <= CHECKPOINT_EVERY
    assert metrics[0]["resumed_from"] is None and metrics[2]["resumed_from"] is None
    assert "resuming from" in relaunched.output and "finished already" in relaunched.output
    assert "3 runs: 3 finished, 0 failed" in (sweep_dir / "report.md").read_text()


def test_shared_arguments_are_left_out_of_the_job_names() -> None:
    """What multirun.sh passes to Hydra, with no extra arguments (the default study) and with some."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from resnet_cifar.launch.study_names import exclude_shared_keys

    def excluded(*args: str) -> list[str]:
        (override,) = OverridesParser.create().parse_overrides([exclude_shared_keys(list(args))])
        assert override.key_or_group == "hydra.job.config.override_dirname.exclude_keys"
        return override.value()

    assert excluded() == ["ckpt_path"]
    assert excluded(
        "trainer=gpu",
        "data.root=/data/cifar",
        "~callbacks.progress_bar",
        "+tags.note=x",
        "model.shortcut=A,B",
        "scheduler.milestones=[1,2]",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=4",
    ) == ["ckpt_path", "trainer", "data.root", "callbacks.progress_bar", "tags.note", "scheduler.milestones"]
    assert excluded("data.root=[unclosed") == ["ckpt_path"]  # Hydra's own error comes later
