"""The paper's table: test error per variant and depth, mean ± std over seeds, as report.md."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from resnet_cifar.files import atomic_write
from resnet_cifar.report.environments import Environment, cell, environment_section, mixed, row_cell
from resnet_cifar.report.networks import Network, parameter_count
from resnet_cifar.report.recipes import Recipe, comparable, describe_recipe, recipe_labels
from resnet_cifar.report.runs import Run, relative

REPORT_FILE = "report.md"
# Paper Table 6: CIFAR-10 test error (%) of the ResNets with option A shortcuts.
PAPER_TEST_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}


@dataclass
class Group:
    """The finished runs of one network and recipe, one per seed (``repeats``: other runs of a seed)."""

    network: Network
    recipe: Recipe
    runs: list[Run] = field(default_factory=list)
    repeats: list[Run] = field(default_factory=list)

    @property
    def variant(self) -> str:
        return self.network.variant

    @property
    def depth(self) -> int | None:
        return self.network.depth

    @property
    def errors(self) -> list[float]:
        return [float(run.metrics["test_err"]) for run in self.runs]

    @property
    def environments(self) -> list[Environment | None]:
        return [run.environment for run in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.errors)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); None for a single run."""
        return statistics.stdev(self.errors) if len(self.errors) > 1 else None

    @property
    def params(self) -> int | None:
        return parameter_count(self.network, [run.metrics.get("parameters") for run in self.runs])

    @property
    def paper(self) -> float | None:
        """The paper's test error for this network, if it has one (option A ResNets, CIFAR-10)."""
        if not self.network.papers or self.variant != "resnet" or self.network.setting("num_classes") != 10:
            return None
        return PAPER_TEST_ERR.get(self.depth)

    @property
    def mixed(self) -> str | None:
        """``mixed: ...`` where its runs differ in software, device or commit (environments.py)."""
        return mixed(self.environments)

    @property
    def comparable(self) -> bool:
        """Trained with the paper's recipe, so that its error may stand beside the paper's."""
        return comparable(self.recipe)


def finished_at(run: Run) -> str:
    found = run.metrics.get("finished_at") if run.metrics else None
    return found if isinstance(found, str) else ""


def group_runs(runs: list[Run]) -> list[Group]:
    """Finished runs by network and recipe: runs trained differently are never averaged together,
    and a seed run twice (the same configuration in two sweeps) counts once, the latest run."""
    groups: dict[tuple, Group] = {}
    for run in sorted((run for run in runs if run.finished), key=lambda run: (finished_at(run), str(run.path))):
        group = groups.setdefault((run.network, run.recipe), Group(run.network, run.recipe))
        earlier = [other for other in group.runs if run.seed is not None and other.seed == run.seed]
        for other in earlier:  # the later run of a seed is counted; the earlier is listed as a repeat
            group.runs.remove(other)
            group.repeats.append(other)
        group.runs.append(run)
    return sorted(
        groups.values(),
        key=lambda g: (g.recipe, not g.network.papers, g.variant != "resnet", g.variant, g.depth or 0),
    )


def format_params(count: int | None) -> str:
    return "not recorded" if count is None else f"{count / 1e6:.2f}M ({count:,})"


def error_table(groups: list[Group], with_paper: bool) -> list[str]:
    header = "| variant | depth | params | n | test err % (mean ± std) | min |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    if with_paper:
        header += " paper |"
        rule += " ---: |"
    # Rows that average runs of different software, devices or code say so, in a column of
    # their own where the table has any.
    with_environment = any(g.mixed for g in groups)
    if with_environment:
        header += " environment |"
        rule += " --- |"
    lines = [header, rule]
    for g in groups:
        std = "—" if g.std is None else f"{g.std:.2f}"
        repeated = f" (+{len(g.repeats)} repeated)" if g.repeats else ""
        row = (
            f"| {cell(g.variant)} | {'—' if g.depth is None else g.depth} | {format_params(g.params)} "
            f"| {len(g.errors)}{repeated} | {g.mean:.2f} ± {std} | {min(g.errors):.2f} |"
        )
        if with_paper:
            row += f" {paper_cell(g)} |"
        if with_environment:
            row += f" {row_cell(g.environments)} |"
        lines.append(row)
    return lines


def paper_cell(group: Group) -> str:
    if group.paper is None:
        return "—"
    return f"{group.paper:.2f}" if group.comparable else "not comparable"


def recipe_sections(title: str, groups: list[Group], labels: dict[Recipe, str], with_paper: bool) -> list[str]:
    """One table per recipe, the paper's first, each under the recipe its runs were trained with."""
    lines = []
    for recipe in sorted({g.recipe for g in groups}):
        own = [g for g in groups if g.recipe == recipe]
        lines += [f"## {title}{labels[recipe]}", "", f"Recipe: {describe_recipe(recipe)}.", ""]
        lines += [*error_table(own, with_paper), ""]
    return lines


def write_markdown(
    root: Path, runs: list[Run], groups: list[Group], plots: list[str], response_problems: list[str] = ()
) -> Path:
    finished = [run for run in runs if run.finished]
    failed = [run for run in runs if not run.finished]
    residual = [g for g in groups if g.network.papers and g.variant != "plain"]
    plain = [g for g in groups if g.network.papers and g.variant == "plain"]
    others = [g for g in groups if not g.network.papers]
    lines = [
        f"# CIFAR ResNets: {root.name or root}",
        "",
        f"{len(runs)} runs: {len(finished)} finished, {len(failed)} failed or unfinished. "
        "Test error is top-1 % of the final weights (the paper's protocol); ± is the sample "
        "standard deviation over seeds (— for a single run). The paper's numbers are He et al. "
        "(2016), Table 6 (ResNets, option A shortcuts), trained with the recipe of Sec. 4.2; each "
        "table states how its runs were trained differently, and where that makes the results "
        "not comparable, the paper column says so. Runs trained differently are never averaged together.",
        "",
    ]
    labels = recipe_labels({g.recipe for g in groups})
    if residual:
        lines += recipe_sections("ResNets", residual, labels, with_paper=True)
    if plain:
        lines += recipe_sections("Plain nets", plain, labels, with_paper=False)
    if others:
        lines += recipe_sections("Other networks", others, labels, with_paper=False)
    if not groups:
        lines += ["No run has finished yet.", ""]
    else:
        lines += environment_section([run.environment for run in finished])
    if plots:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({name})" for name in plots]
        lines += [""]
    if response_problems:
        lines += ["Layer responses (Fig. 7) not computed for:", ""]
        lines += [f"- {problem}" for problem in response_problems]
        lines += [""]
    repeats = [(g, run) for g in groups for run in g.repeats]
    if repeats:
        lines += ["## Repeated seeds", "", "Runs of a configuration and seed that a later run of both repeats; the"]
        lines += ["tables count the later one only (the same seed run again is no new sample).", ""]
        lines += ["| run | network | seed | counted instead |", "| --- | --- | --- | --- |"]
        for group, run in repeats:
            counted = next(other for other in group.runs if other.seed == run.seed)
            lines.append(
                f"| {cell(relative(run.path, root))} | {cell(group.network.title)}{labels[group.recipe]} "
                f"| {cell(run.seed)} | {cell(relative(counted.path, root))} |"
            )
        lines += [""]
    if failed:
        lines += ["## Failed or unfinished runs", "", "| run | why |", "| --- | --- |"]
        lines += [f"| {cell(relative(run.path, root))} | {cell(run.problem)} |" for run in failed]
        lines += [""]
    path = root / REPORT_FILE
    with atomic_write(path) as temporary:
        temporary.write_text("\n".join(lines))
    return path
