"""The results of bench/throughput.py: the table it prints and the JSON file it writes.

A row per depth and pipeline gives the medians over the rounds (images/s, ms/step, CPU ms per
image, peak memory) and the spread of images/s; the lines under the table compare pipelines
(project against classic, compiled against eager, Lightning's overhead against the bare loop),
report the host syncs counted by ``--sync-check`` and, with ``--host-overhead``, each pair's host
time per step and Lightning's share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

from throughput_pipelines import HOST_OVERHEAD_PAIRS

Measurements = dict[tuple[int, str], list[dict]]  # (depth, pipeline) -> one result per round


def median_of(results: list[dict], key: str) -> float | None:
    """The median of ``key`` over the results that have it (None: none has)."""
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def machine_description(args: argparse.Namespace) -> str:
    """The GPU, or the CPU with its threads and load averages, and torch's version."""
    import torch

    if args.device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = args.threads or torch.get_num_threads()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{threads} threads, load average {args.load_at_start:.1f} at the start and {load:.1f} at the end"
    )


def format_table(args: argparse.Namespace, measurements: Measurements) -> str:
    """The header line, the table of medians and the comparisons under it."""
    memory = "peak CUDA MiB" if args.device == "cuda" else "peak RSS MiB"
    lines = [
        f"| depth | pipeline | images/s | ms/step | CPU ms/image | {memory} | runs |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    ratios = []
    for depth in args.depths:
        for pipeline in args.pipelines:
            results = [r for r in measurements[(depth, pipeline)] if "error" not in r]
            if not results:
                error = measurements[(depth, pipeline)][-1].get("error", "no result")
                lines.append(f"| {depth} | {pipeline} | failed: {error} | | | | |")
                continue
            speeds = sorted(r["images_per_s"] for r in results)
            spread = f"{len(results)}: {speeds[0]:.0f}-{speeds[-1]:.0f}" if len(results) > 1 else "1"
            notes = []
            if any(r.get("fallback_warning") for r in results):
                notes.append("compile fell back")
            if results[0].get("channels_last"):
                notes.append("NHWC")
            if any(r.get("cudagraph_skips") for r in results):
                notes.append(f"CUDA graphs skipped {max(r['cudagraph_skips'] for r in results)}x")
            lines.append(
                f"| {depth} | {pipeline}{' (' + ', '.join(notes) + ')' if notes else ''} | "
                f"{median_of(results, 'images_per_s'):.0f} | "
                f"{median_of(results, 'ms_per_step'):.1f} | {median_of(results, 'cpu_ms_per_image'):.2f} | "
                f"{median_of(results, 'peak_mem_mb'):.0f} | {spread} |"
            )

        def speed(pipeline: str, depth: int = depth) -> float | None:
            return median_of([r for r in measurements.get((depth, pipeline), []) if "error" not in r], "images_per_s")

        def cost(pipeline: str, depth: int = depth) -> float | None:
            return median_of(
                [r for r in measurements.get((depth, pipeline), []) if "error" not in r], "cpu_ms_per_image"
            )

        for fast, slow, label in (
            ("project", "classic", "project / classic"),
            ("project-compile", "classic", "project-compile / classic"),
            ("project-step", "classic", "project-step / classic"),
            ("project-compile", "project", "compile speed-up"),
            ("project-step", "project", "whole-step compile speed-up"),
        ):
            if speed(fast) and speed(slow):
                text = f"ResNet-{depth}: {label} = {speed(fast) / speed(slow):.2f}x images/s"
                if cost(fast) and cost(slow):
                    text += f", {cost(slow) / cost(fast):.2f}x less CPU time per image"
                ratios.append(text)
        for pipeline in ("project", "project-compile", "project-step"):
            checked = [r for r in measurements.get((depth, pipeline), []) if "syncs_per_step" in r]
            if checked:
                sites = ", ".join(f"{site} x{count}" for site, count in checked[-1]["sync_sites"]) or "none"
                ratios.append(
                    f"ResNet-{depth}: {pipeline} host syncs per timed step = "
                    f"{median_of(checked, 'syncs_per_step'):.3f} (where: {sites})"
                )
        for lightning, bare in HOST_OVERHEAD_PAIRS:
            if speed(lightning) and speed(bare):
                ratios.append(
                    f"ResNet-{depth}: Lightning overhead ({lightning} vs {bare}) = "
                    f"{100 * (speed(bare) / speed(lightning) - 1):+.1f} % time per step"
                )
    if args.host_overhead:
        ratios += host_overhead_lines(args, measurements)
    header = (
        f"device {args.device} ({machine_description(args)}), precision {args.precision}, batch {args.batch_size}, "
        f"{args.warmup} warm-up + {args.steps} timed steps, data {args.data_root or 'synthetic'}, "
        f"classic workers {args.workers}, repeats {args.repeats} (medians)"
        + (f", module.channels_last={args.channels_last}" if args.channels_last else "")
    )
    return "\n".join([header, "", *lines, "", *ratios])


def host_overhead_lines(args: argparse.Namespace, measurements: Measurements) -> list[str]:
    """Host ms/step of each pipeline and Lightning's share (project minus bare): the median of
    the per-round differences, rounds being interleaved so that both saw the same load."""
    lines = []
    for depth in args.depths:
        for project, bare in HOST_OVERHEAD_PAIRS:
            rounds = list(zip(measurements.get((depth, project), []), measurements.get((depth, bare), [])))
            rounds = [(a, b) for a, b in rounds if "error" not in a and "error" not in b]
            if not rounds:
                continue
            wall = [a["ms_per_step"] - b["ms_per_step"] for a, b in rounds]
            cpu = [args.batch_size * (a["cpu_ms_per_image"] - b["cpu_ms_per_image"]) for a, b in rounds]
            fast = [a["fast_ms_per_step"] - b["fast_ms_per_step"] for a, b in rounds]
            outside = [a["outside_ms_per_step"] - b["outside_ms_per_step"] for a, b in rounds]
            lines.append(
                f"host ms/step (ResNet-{depth}, batch {args.batch_size}): {project} "
                f"{median_of([a for a, _ in rounds], 'ms_per_step'):.2f}, "
                f"{bare} {median_of([b for _, b in rounds], 'ms_per_step'):.2f}; "
                f"Lightning's share ({project} - {bare}) = {statistics.median(wall):.2f} ms/step "
                f"(median of {len(rounds)} rounds: {', '.join(f'{d:.2f}' for d in wall)}), "
                f"CPU time {statistics.median(cpu):.2f} ms/step; in the fastest tenth of the steps "
                f"{statistics.median(fast):.2f} ms/step (rounds: {', '.join(f'{d:.2f}' for d in fast)}); "
                f"outside the shared work {project} {median_of([a for a, _ in rounds], 'outside_ms_per_step'):.3f}, "
                f"{bare} {median_of([b for _, b in rounds], 'outside_ms_per_step'):.3f}, share "
                f"{statistics.median(outside):.3f} ms/step (rounds: {', '.join(f'{d:.3f}' for d in outside)}); "
                f"page faults per step {project} {median_of([a for a, _ in rounds], 'page_faults_per_step'):.0f}, "
                f"{bare} {median_of([b for _, b in rounds], 'page_faults_per_step'):.0f}"
            )
    return lines


def write_json(args: argparse.Namespace, measurements: Measurements, table: str | None) -> None:
    """With ``--json``: the arguments, every measurement and the table (None until it is made)."""
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "measurements": [
                        {"depth": d, "pipeline": p, "runs": runs} for (d, p), runs in measurements.items()
                    ],
                    "table": table,
                },
                indent=2,
            )
        )
