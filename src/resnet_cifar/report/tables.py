"""The paper's table: test error per variant and depth, mean ± std over seeds, as report.md."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from resnet_cifar.files import atomic_write
from resnet_cifar.report.runs import Run, relative

REPORT_FILE = "report.md"
# Paper Table 6: CIFAR-10 test error (%) of the ResNets with option A shortcuts.
PAPER_TEST_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}


@lru_cache(maxsize=None)
def parameter_count(depth: int, shortcut: str, residual: bool, num_classes: int) -> int:
    from resnet_cifar.models import cifar_resnet

    net = cifar_resnet(depth=depth, shortcut=shortcut, residual=residual, num_classes=num_classes)
    return sum(p.numel() for p in net.parameters())


@dataclass
class Group:
    variant: str
    depth: int
    shortcut: str
    residual: bool
    num_classes: int
    errors: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.errors)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); None for a single run."""
        return statistics.stdev(self.errors) if len(self.errors) > 1 else None

    @property
    def params(self) -> int:
        return parameter_count(self.depth, self.shortcut, self.residual, self.num_classes)

    @property
    def paper(self) -> float | None:
        return PAPER_TEST_ERR.get(self.depth) if self.variant == "resnet" and self.num_classes == 10 else None


def group_runs(runs: list[Run]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for run in runs:
        if not run.finished:
            continue
        key = (run.variant, run.depth, run.num_classes)
        if key not in groups:
            groups[key] = Group(run.variant, run.depth, run.shortcut, run.residual, run.num_classes, [])
        groups[key].errors.append(float(run.metrics["test_err"]))
    return sorted(groups.values(), key=lambda g: (g.variant != "resnet", g.variant, g.num_classes, g.depth))


def format_params(count: int) -> str:
    return f"{count / 1e6:.2f}M ({count:,})"


def error_table(groups: list[Group], with_paper: bool) -> list[str]:
    header = "| variant | depth | params | n | test err % (mean ± std) | min |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    if with_paper:
        header += " paper |"
        rule += " ---: |"
    lines = [header, rule]
    for g in groups:
        std = "—" if g.std is None else f"{g.std:.2f}"
        row = (
            f"| {g.variant} | {g.depth} | {format_params(g.params)} | {len(g.errors)} "
            f"| {g.mean:.2f} ± {std} | {min(g.errors):.2f} |"
        )
        if with_paper:
            row += f" {g.paper:.2f} |" if g.paper is not None else " — |"
        lines.append(row)
    return lines


def write_markdown(
    root: Path, runs: list[Run], groups: list[Group], plots: list[str], response_problems: list[str] = ()
) -> Path:
    finished = [run for run in runs if run.finished]
    failed = [run for run in runs if not run.finished]
    residual = [g for g in groups if g.variant != "plain"]
    plain = [g for g in groups if g.variant == "plain"]
    lines = [
        f"# CIFAR ResNets: {root.name or root}",
        "",
        f"{len(runs)} runs: {len(finished)} finished, {len(failed)} failed or unfinished. "
        "Test error is top-1 % of the final weights (the paper's protocol); ± is the sample "
        "standard deviation over seeds (— for a single run). The paper's numbers are He et al. "
        "(2016), Table 6 (ResNets, option A shortcuts).",
        "",
    ]
    if residual:
        lines += ["## ResNets", "", *error_table(residual, with_paper=True), ""]
    if plain:
        lines += ["## Plain nets", "", *error_table(plain, with_paper=False), ""]
    if not groups:
        lines += ["No run has finished yet.", ""]
    if plots:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({name})" for name in plots]
        lines += [""]
    if response_problems:
        lines += ["Layer responses (Fig. 7) not computed for:", ""]
        lines += [f"- {problem}" for problem in response_problems]
        lines += [""]
    if failed:
        lines += ["## Failed or unfinished runs", "", "| run | why |", "| --- | --- |"]
        lines += [f"| {relative(run.path, root)} | {run.problem} |" for run in failed]
        lines += [""]
    path = root / REPORT_FILE
    with atomic_write(path) as temporary:
        temporary.write_text("\n".join(lines))
    return path
