"""Training throughput of the project's path against the classic pipeline, in one table.

    python bench/throughput.py                                   # CPU, ResNet-20, synthetic data
    python bench/throughput.py --data-root /tmp/cifar/cifar10-jpeg --steps 30 --repeats 3
    python bench/throughput.py --device cuda --precision bf16-mixed --depths 20 56 110 --compile
    python bench/throughput.py --host-overhead [--compile]      # host ms/step, Lightning's share
    python bench/throughput.py --device cuda --compile step      # only the whole-step variants

Each configuration runs in its own subprocess (fresh memory statistics, no shared caches), one
after another on the same data and machine; with --repeats the configurations are interleaved
round by round and the table shows the median. Pipelines:

  project  the project's training path: Hydra config -> CIFARDataModule, ImageClassifier and
           Lightning Trainer with every configured callback (checkpoints every 1000 steps,
           progress bar, lr monitor, ...) and the TensorBoard logger; validation off
           (limit_val_batches=0), since it is not a training step
  bare     a plain PyTorch loop over the project's model and data path: the same DataModule
           batches, on_after_batch_transfer and ImageClassifier.forward, no Lightning; the gap
           to `project` is Lightning's overhead (plus the module's metric and logging calls)
  classic  the classic pipeline: a torchvision-style Dataset yielding one PIL image per item,
           RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize, a DataLoader
           with --workers worker processes, a plain PyTorch loop; the same network
  project-compile, bare-compile   the same with module.compile=true (the network's forward and
           backward compiled; augmentation and the SGD update run op by op)
  project-step, bare-step   module=whole_step: the whole training step (augmentation, forward,
           backward, SGD update) compiled as one graph; bare-step calls the same
           WholeTrainingStep from a plain loop

With --host-overhead the network is made nearly free (ResNet-8, batch 8, one thread) and each
pair (project and bare, compiled pairs with --compile) gets one line: its ms/step and Lightning's
share (project minus bare) three ways: in wall time, in the fastest tenth of the steps, and in
the host time outside the work both do (data, augmentation, forward, loss, backward, SGD update,
scheduler: see SharedWork), which other programs on the machine disturb least. Its children run
with glibc's malloc thresholds fixed (STEADY_MALLOC), and the line gives each side's page faults
per step.

Throughput is steady state: --warmup steps first (not timed), then --steps timed steps, the
device synchronised at both ends. Peak memory is torch.cuda.max_memory_allocated on a GPU and
the peak resident set size of the main process on the CPU (classic: plus its largest worker).
CPU ms/image is the processor time (all threads, and the classic pipeline's workers) spent
per trained image: unlike images/s it barely moves when other programs share the machine.

This file holds the command line and the parent process; the children's measurements are in
throughput_project.py (project) and throughput_plain.py (bare, classic), timed by
throughput_clock.py, and the table is made by throughput_table.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from throughput_child import run_child
from throughput_pipelines import COMPILED_PIPELINES, DEFAULT_PIPELINES, HOST_OVERHEAD_PAIRS, PIPELINES, REPO
from throughput_table import format_table, write_json

# --host-overhead children: glibc's malloc thresholds fixed instead of adjusted by each process's
# history. With the dynamic ones the project's process faulted about 190 fresh pages per step for
# its CPU tensors against the bare loop's 60 (mmap'ed and trimmed memory, 2026-11-29): CPU
# allocator work inside the forward and backward, which a GPU's caching allocator does not do.
STEADY_MALLOC = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--depths", type=int, nargs="+", default=[20], help="ResNet depths, e.g. 20 56 110")
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(DEFAULT_PIPELINES))
    parser.add_argument(
        "--compile",
        nargs="*",
        choices=tuple(COMPILED_PIPELINES),
        default=None,
        metavar="SCOPE",
        help="also run the compiled pipelines of these scopes: network (module.compile=true: "
        "project-compile, bare-compile), step (module=whole_step: project-step, bare-step); "
        "no scope given: both",
    )
    parser.add_argument(
        "--precision",
        default=None,
        help="32-true, bf16-mixed or 16-mixed (default: 32-true on cpu, bf16-mixed on cuda)",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 on cpu, 300 on cuda)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5 on cpu, 50 on cuda)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--data-root",
        default=None,
        help="a CIFAR-10 root (image folder or torchvision folder); default: synthetic data",
    )
    parser.add_argument(
        "--synthetic-size",
        type=int,
        default=50_000,
        help="training images of the synthetic data (before the 5k val split)",
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="classic DataLoader workers")
    parser.add_argument(
        "--channels-last",
        choices=("true", "false"),
        default=None,
        help="module.channels_last for project and bare (default: the config's, true)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads in every configuration (default: torch's own choice)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds over all configurations; the table shows medians (default 1; 3 with --host-overhead)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds one configuration may take")
    parser.add_argument(
        "--sync-check",
        action="store_true",
        help="cuda: count host syncs in the project's timed steps (torch.cuda.set_sync_debug_mode); "
        "cpu: count the collectives per step of a 2-process DDP run (gloo), with Lightning's "
        "SIGTERM handling and the project's (bench/ddp_syncs.py)",
    )
    parser.add_argument(
        "--host-overhead",
        action="store_true",
        help="host time per step: a nearly free network (ResNet-8, batch 8, one thread, 30 warm-up + 300 "
        "steps, 3 interleaved rounds at least) for project and bare (and the compiled pairs "
        "with --compile), then one line per pair with ms/step and Lightning's share",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    parser.add_argument("--child", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host_overhead:
        apply_host_overhead_settings(args)
    args.repeats = args.repeats or 1
    on_gpu = args.device == "cuda"
    args.precision = args.precision or ("bf16-mixed" if on_gpu else "32-true")
    args.steps = args.steps if args.steps is not None else (300 if on_gpu else 30)
    args.warmup = args.warmup if args.warmup is not None else (50 if on_gpu else 5)
    if args.compile is not None:
        for scope in args.compile or COMPILED_PIPELINES:
            args.pipelines += [p for p in COMPILED_PIPELINES[scope] if p not in args.pipelines]
    if args.precision not in ("32-true", "bf16-mixed", "16-mixed"):
        parser.error(f"--precision {args.precision}: use 32-true, bf16-mixed or 16-mixed")
    return args


def apply_host_overhead_settings(args: argparse.Namespace) -> None:
    """--host-overhead: the network's compute made nearly free, so that a step's time is the
    host's (Python, the framework, per-operator dispatch); on a GPU that sets the step rate of a
    small ResNet. Steps, warm-up and repeats given explicitly are kept; depth, batch and threads
    are fixed."""
    args.depths, args.batch_size, args.threads = [8], 8, 1
    args.steps = args.steps if args.steps is not None else 300
    args.warmup = args.warmup if args.warmup is not None else 30
    args.repeats = args.repeats or 3
    args.pipelines = list(HOST_OVERHEAD_PAIRS[0])  # --compile adds the compiled pairs


# ---------------------------------------------------------------------------------------------
# The parent: one subprocess per configuration, then the table


def child_command(args: argparse.Namespace, pipeline: str, depth: int) -> list[str]:
    """This script's command line for one measurement of ``pipeline`` at ``depth``."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        pipeline,
        "--depth",
        str(depth),
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--synthetic-size",
        str(args.synthetic_size),
    ]
    if args.data_root:
        command += ["--data-root", args.data_root]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.channels_last:
        command += ["--channels-last", args.channels_last]
    if args.sync_check:
        command += ["--sync-check"]
    if args.host_overhead:
        command += ["--host-overhead"]
    return command


def run_configuration(args: argparse.Namespace, pipeline: str, depth: int) -> dict:
    """One measurement in its own subprocess: its result, or ``{"error": ...}``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    if args.host_overhead:
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), STEADY_MALLOC]))
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            child_command(args, pipeline, depth), env=env, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-15:]
        print(
            f"  {pipeline} depth {depth} failed (exit {completed.returncode}):\n    " + "\n    ".join(tail),
            file=sys.stderr,
        )
        return {"error": f"exit status {completed.returncode}"}
    result = json.loads(lines[-1][len("RESULT ") :])
    result["wall_s"] = time.perf_counter() - started
    result["fallback_warning"] = result.get("fallback_warning", False) or "CompileFallbackWarning" in completed.stderr
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return 0
    args.load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    measurements: dict[tuple[int, str], list[dict]] = {(d, p): [] for d in args.depths for p in args.pipelines}
    for round_index in range(args.repeats):
        for depth in args.depths:
            for pipeline in args.pipelines:
                result = run_configuration(args, pipeline, depth)
                measurements[(depth, pipeline)].append(result)
                shown = f"{result['images_per_s']:.0f} images/s" if "images_per_s" in result else result["error"]
                print(
                    f"[round {round_index + 1}/{args.repeats}] ResNet-{depth} {pipeline}: {shown}",
                    file=sys.stderr,
                    flush=True,
                )
                write_json(args, measurements, table=None)  # after each one: a killed run keeps its results
    table = format_table(args, measurements)
    if args.sync_check and args.device == "cpu":
        import ddp_syncs  # bench/ddp_syncs.py

        table += "\n" + "\n".join(
            ddp_syncs.report(args.depths[0], args.batch_size, args.warmup, args.steps, args.timeout)
        )
    print(table)
    write_json(args, measurements, table)
    failed = any("error" in r for runs in measurements.values() for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
