"""The study of bench/fidelity.py: every run of every path and seed, each in its own subprocess.

Runs start in interleaved order (project seed 0, reference seed 0, project seed 1, ...),
``--jobs`` at a time, so that both paths share the machine alike. The project path is
``python -m resnet_cifar.train`` with the recipe's settings on its command line; the reference
path is ``bench/fidelity.py --run-reference SEED``. Under ``--out`` each finished run writes
``runs/<path>-seed<k>.json``, its log ``logs/<path>-seed<k>.log`` and its working folder
``<path>/seed<k>``; a run whose JSON exists is skipped, so that an interrupted study resumes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fidelity_recipe import DEPTH, milestones, utc_now

# The script whose --run-reference option runs one reference run.
ENTRY = Path(__file__).resolve().with_name("fidelity.py")


@dataclass(frozen=True)
class Run:
    """One training run: a path (project or reference) and a seed."""

    path: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.path}-seed{self.seed}"


def run_json(out: Path, run: Run) -> Path:
    """Where a finished run's record is written."""
    return out / "runs" / f"{run.name}.json"


def work_dir(out: Path, run: Run) -> Path:
    """The run's working folder (the project's Hydra run folder; the reference's result.json)."""
    return out / run.path / f"seed{run.seed}"


def child_env(threads: int | None) -> dict[str, str]:
    """This environment, with ``threads`` OpenMP and MKL threads where given."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def project_command(args: argparse.Namespace, run: Run) -> list[str]:
    """The project's training command for ``run``, the recipe's settings as Hydra overrides."""
    low, high = milestones(args.steps)
    return [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        f"data.root={Path(args.data_root).resolve()}",
        f"seed={run.seed}",
        f"trainer.max_steps={args.steps}",
        f"scheduler.milestones=[{low},{high}]",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"hydra.run.dir={work_dir(args.out, run).resolve()}",
        *args.project_override,
    ]


def reference_command(args: argparse.Namespace, run: Run) -> list[str]:
    """``bench/fidelity.py --run-reference SEED`` for ``run``."""
    command = [
        sys.executable,
        str(ENTRY),
        "--run-reference",
        str(run.seed),
        "--data-root",
        str(Path(args.data_root).resolve()),
        "--steps",
        str(args.steps),
        "--device",
        args.device,
        "--out",
        str(args.out.resolve()),
        "--log-every",
        str(args.log_every),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    return command


def project_package() -> str:
    """Where ``python -m resnet_cifar.train`` imports the project from, with this environment."""
    spec = importlib.util.find_spec("resnet_cifar")
    return str(Path(spec.origin).parent) if spec and spec.origin else "?"


_print_lock = threading.Lock()


def say(message: str) -> None:
    """Print ``message`` with the time, one line at a time from the runs' threads."""
    with _print_lock:
        print(f"[{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}] {message}", flush=True)


def execute(args: argparse.Namespace, run: Run) -> bool:
    """Run ``run`` in a subprocess, logging to its log file; write its JSON if it succeeds."""
    log_file = args.out / "logs" / f"{run.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    folder = work_dir(args.out, run)
    folder.mkdir(parents=True, exist_ok=True)
    command = project_command(args, run) if run.path == "project" else reference_command(args, run)
    say(f"start {run.name} (log {log_file})")
    start = time.perf_counter()
    with open(log_file, "a") as log:
        log.write(f"# {utc_now()} {' '.join(command)}\n")
        log.flush()
        returncode = subprocess.call(
            command, stdout=log, stderr=subprocess.STDOUT, env=child_env(args.threads), cwd=folder
        )
    wall_s = time.perf_counter() - start
    if returncode != 0:
        say(f"FAILED {run.name}: exit status {returncode} after {wall_s:.0f} s; see {log_file}")
        return False
    if run.path == "project":
        metrics = json.loads((folder / "metrics.json").read_text())
        result = {
            key: metrics.get(key)
            for key in (
                "test_err",
                "test_loss",
                "val_err",
                "val_loss",
                "steps",
                "train_s",
                "started_at",
                "finished_at",
                "resumed_from",
            )
        }
        result["package"] = project_package()
    else:
        result = json.loads((folder / "result.json").read_text())
    record = {
        "path": run.path,
        "seed": run.seed,
        "test_err": result.pop("test_err"),
        "wall_s": round(wall_s, 1),
        "steps": result.pop("steps"),
        "target_steps": args.steps,
        "device": args.device,
        "threads": args.threads,
        **result,
    }
    if record["steps"] != args.steps:
        say(f"FAILED {run.name}: it trained {record['steps']} steps, not {args.steps}; see {log_file}")
        return False
    target = run_json(args.out, run)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    temporary.replace(target)
    say(f"done {run.name}: test error {record['test_err']:.2f} % in {wall_s / 60:.1f} min")
    return True


def planned_runs(paths: Sequence[str], seeds: Sequence[int]) -> list[Run]:
    """Seed by seed, every path in turn: both paths run side by side under the same load."""
    return [Run(path, seed) for seed in seeds for path in paths]


def run_study(args: argparse.Namespace, seeds: list[int]) -> bool:
    """Run every planned run not finished yet; True if all of them succeed."""
    runs = planned_runs(args.paths, seeds)
    todo = []
    for run in runs:
        existing = run_json(args.out, run)
        if existing.is_file():
            record = json.loads(existing.read_text())
            if record.get("target_steps", record.get("steps")) != args.steps:
                raise SystemExit(
                    f"{existing} holds a run of {record.get('steps')} steps, not {args.steps}; "
                    "use another --out for another schedule"
                )
            say(f"skip {run.name}: finished already ({existing})")
        else:
            todo.append(run)
    low, high = milestones(args.steps)
    say(
        f"{len(todo)} of {len(runs)} runs to do: ResNet-{DEPTH}, {args.steps} steps (lr /10 at {low} and {high}), "
        f"seeds {seeds}, paths {' '.join(args.paths)}, device {args.device}, threads {args.threads or 'default'}, "
        f"{args.jobs} at a time; project code from {project_package()}"
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda run: execute(args, run), todo))
    return all(results)
