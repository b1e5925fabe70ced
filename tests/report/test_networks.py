"""The report takes every network a user can train: each under its own name and parameter count,
beside the paper's numbers only where it is the paper's network; a seed run twice counts once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fake_runs import H100, write_run
from resnet_cifar.report import figures as report_figures
from resnet_cifar.report import write_report
from run_outputs import report_row as row

WIDE = "{_target_: my_lab.nets.wide_resnet, depth: 16, width: 4, num_classes: 10}"
DEPTH_20_OF_MY_OWN = "{_target_: my_lab.nets.deep_net, depth: 20, num_classes: 10}"


def section(report: str, heading: str) -> str:
    return report.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("study")
    write_run(root, "resnet/0", 20, 0, H100)
    for seed in (0, 1):
        write_run(root, f"wide/{seed}", 16, seed, H100, model=WIDE, choice="wide", parameters=2_748_890)
    write_run(root, "deep/0", 20, 0, H100, model=DEPTH_20_OF_MY_OWN, choice="deep")
    return write_report(root, responses=False).read_text()


def test_a_network_of_ones_own_is_a_finished_run_of_its_own(report: str) -> None:
    others = section(report, "Other networks")
    assert "| wide (width=4) | 16 | 2.75M (2,748,890) | 2 |" in others
    assert "Failed or unfinished runs" not in report


def test_only_the_papers_network_stands_beside_the_papers_numbers(report: str) -> None:
    """A network of one's own with a depth of 20 is not the paper's ResNet-20: no paper column, and
    no parameter count made up from the paper's network."""
    (deep,) = [line for line in section(report, "Other networks").splitlines() if line.startswith("| deep |")]
    assert deep.startswith("| deep | 20 | not recorded | 1 |") and "8.75" not in deep
    assert row(report, "resnet", 20)[6] == "8.75"
    assert "| deep |" not in section(report, "ResNets")


def test_a_seed_run_twice_counts_once_and_is_listed(tmp_path: Path) -> None:
    """The same configuration and seed in two sweeps below one folder: the later run is counted."""
    for sweep, finished in (("first", "2026-01-01T10:00:00Z"), ("second", "2026-01-02T10:00:00Z")):
        write_run(
            tmp_path, f"{sweep}/seed0", 20, 0, H100, finished_at=finished, test_err=8.0 if sweep == "first" else 9.0
        )
    write_run(tmp_path, "second/seed1", 20, 1, H100)
    report = write_report(tmp_path, responses=False).read_text()
    cells = row(report, "resnet", 20)
    assert cells[3] == "2 (+1 repeated)" and cells[4].startswith("8.55 ±")  # seeds 0 (9.0, the later) and 1 (8.1)
    repeats = section(report, "Repeated seeds")
    assert "| first/seed0 | ResNet-20 | 0 | second/seed0 |" in repeats


def test_figures_name_the_data_they_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    titles: list[str] = []

    def recorded(fig: Any, path: Path) -> str:
        titles.extend(text.get_text() for text in [fig._suptitle, *(ax.title for ax in fig.axes)] if text)
        return path.name

    monkeypatch.setattr(report_figures, "save_figure", recorded)
    run = write_run(tmp_path, "a", 20, 0, H100, dataset="synthetic")
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run)) as writer:
        for step in (10, 20):
            writer.add_scalar("val/err", 50.0, step)
    write_report(tmp_path, responses=False)
    assert "Training on synthetic (mean over seeds)" in titles
    assert "Test error on synthetic vs depth" in titles
    assert not any("CIFAR-10" in title for title in titles)
