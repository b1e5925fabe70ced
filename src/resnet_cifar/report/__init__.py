"""Reading a folder of finished runs and writing the paper's table and figures from it."""

from __future__ import annotations

from pathlib import Path

from resnet_cifar.report.figures import plot_error_vs_depth, plot_training_curves
from resnet_cifar.report.responses import plot_layer_responses, read_responses
from resnet_cifar.report.runs import ReportError, read_runs
from resnet_cifar.report.tables import group_runs, write_markdown

__all__ = ["ReportError", "write_report"]


def write_report(root: str | Path, responses: bool = True) -> Path:
    """Read the runs below ``root`` and write ``root/report.md`` and its plots; return its path."""
    root = Path(root)
    runs = read_runs(root)
    groups = group_runs(runs)
    response_problems = read_responses(root, runs) if responses else []
    plots = [
        name
        for name in (
            plot_training_curves(root, runs),
            plot_error_vs_depth(root, groups),
            plot_layer_responses(root, runs) if responses else None,
        )
        if name
    ]
    return write_markdown(root, runs, groups, plots, response_problems)
