"""The table of bench/fidelity.py, from the records of the finished runs under ``--out``.

For each schedule (number of steps) and path: every seed's test error, their mean ± sample
standard deviation and the mean wall time; then the difference of the means (project -
reference) with its 95 % Welch interval, and whether the interval includes zero.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fidelity_recipe import BATCH_SIZE, DEPTH, milestones
from fidelity_stats import welch_difference


def mean_std(values: Sequence[float]) -> str:
    """``mean ± sample standard deviation`` (the mean alone for one value)."""
    if len(values) < 2:
        return f"{statistics.fmean(values):.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def load_records(out: Path) -> list[dict[str, Any]]:
    """The records of the finished runs under ``out``."""
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def report(out: Path, paths: Sequence[str]) -> str:
    """The table of the finished runs under ``out``, one block per schedule."""
    records = load_records(out)
    if not records:
        return f"no finished runs under {out / 'runs'}"
    lines = []
    for steps in sorted({r.get("target_steps", r["steps"]) for r in records}):
        low, high = milestones(steps)
        devices = sorted({r.get("device", "?") for r in records})
        lines.append(
            f"ResNet-{DEPTH}, {steps} steps (lr 0.1, /10 at {low} and {high}), batch {BATCH_SIZE}, "
            f"on {', '.join(devices)}: top-1 test error (%), final weights"
        )
        errors: dict[str, list[float]] = {}
        lines.append(f"{'path':<10} {'n':>2}  {'mean ± std':<14} {'wall min':>8}  errors by seed")
        for path in paths:
            rows = sorted(
                (r for r in records if r["path"] == path and r.get("target_steps", r["steps"]) == steps),
                key=lambda r: r["seed"],
            )
            if not rows:
                lines.append(f"{path:<10} {0:>2}  (no finished runs)")
                continue
            errors[path] = [r["test_err"] for r in rows]
            wall = statistics.fmean(r["wall_s"] for r in rows) / 60
            by_seed = "  ".join(f"{r['seed']}: {r['test_err']:.2f}" for r in rows)
            lines.append(f"{path:<10} {len(rows):>2}  {mean_std(errors[path]):<14} {wall:>8.1f}  {by_seed}")
        if len(paths) == 2 and all(p in errors for p in paths):
            first, second = paths
            d = welch_difference(errors[first], errors[second])
            text = f"difference of the means ({first} - {second}): {d.estimate:+.2f} points"
            if d.low is None:
                text += "; its interval needs at least 2 seeds per path"
            else:
                verdict = "includes zero" if d.low <= 0 <= d.high else "EXCLUDES zero"
                text += (
                    f", 95 % CI [{d.low:+.2f}, {d.high:+.2f}] (Welch, df {d.df:.1f}): {verdict}; "
                    f"width {d.high - d.low:.2f} points"
                )
            lines.append(text)
        lines.append("")
    return "\n".join(lines).rstrip()
