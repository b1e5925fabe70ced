"""The report over run folders from elsewhere: it reads them as bounded data, never follows or
writes through their links, and lists a run it cannot read with the reason while it reports the
others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crafted_checkpoints import alias_bomb, files_of, payload, plant, victims
from fake_runs import H100, write_run
from resnet_cifar.report import write_report
from run_outputs import report_row as row
from tiny_runs import TINY_SYNTHETIC_RUN, run_training


def failed_runs(report: str) -> dict[str, str]:
    """The "Failed or unfinished runs" table: run -> why."""
    section = report.split("## Failed or unfinished runs", 1)[1]
    cells = [
        line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line
    ]
    return {run.strip(): why.strip() for run, why in cells[1:]}


def test_nothing_is_written_or_read_through_links(tmp_path: Path) -> None:
    folder = victims(tmp_path / "victims")
    write_run(folder / "their_study", "20/9", 20, 9, H100)  # a run outside, reachable by a link only
    root = tmp_path / "study"
    write_run(root, "20/0", 20, 0, H100)
    write_run(root, "20/1", 20, 1, H100)
    linked = write_run(root, "20/2", 20, 2, H100)
    (linked / "metrics.json").unlink()
    (linked / "metrics.json").symlink_to(folder / "their_study" / "20" / "9" / "metrics.json")
    (root / "report.md").symlink_to(folder / "notes.txt")
    (root / "error_vs_depth.png").symlink_to(folder / "other.txt")
    (root / "training_curves.png").symlink_to(folder / "created.txt")  # dangling: writing would create it
    (root / "theirs").symlink_to(folder / "their_study", target_is_directory=True)
    before = files_of(folder)
    report = write_report(root, responses=False).read_text()
    assert files_of(folder) == before
    assert not (root / "report.md").is_symlink() and not (root / "error_vs_depth.png").is_symlink()
    assert row(report, "resnet", 20)[3] == "2"  # 20/0 and 20/1; the linked metrics.json and folder are not read
    assert failed_runs(report) == {
        "20/2": "metrics.json cannot be read ("
        + str(linked / "metrics.json")
        + " is a symbolic link, which is not followed)"
    }


def test_a_run_that_cannot_be_read_is_listed_and_the_others_reported(tmp_path: Path) -> None:
    root = tmp_path / "study"
    write_run(root, "20/0", 20, 0, H100)
    bomb = write_run(root, "20/1", 20, 1, H100)
    (bomb / ".hydra" / "config.yaml").write_text(alias_bomb())
    deep = write_run(root, "20/2", 20, 2, H100)
    (deep / "metrics.json").write_text("[" * 200_000 + "]" * 200_000)
    large = write_run(root, "20/3", 20, 3, H100)
    (large / "metrics.json").write_text(json.dumps({"test_err": 8.0, "padding": "x" * 5_000_000}))
    report = write_report(root, responses=False).read_text()
    assert row(report, "resnet", 20)[3] == "1"
    why = failed_runs(report)
    assert "holds a YAML alias, which is not read from such a file" in why["20/1"]
    assert "nests deeper than 64 levels" in why["20/2"]
    assert "over the 4,194,304 read from such a file" in why["20/3"]


def test_fig_7_builds_no_network_the_user_did_not_allow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_networks_allowed_from_outside: None
) -> None:
    folder = victims(tmp_path / "victims")
    root = tmp_path / "study"
    own, theirs = root / "own", root / "theirs"
    for run_dir in (own, theirs):
        run_training(run_dir, *TINY_SYNTHETIC_RUN, "trainer.max_steps=2")
    last = theirs / "checkpoints" / "last.ckpt"
    torch.save(plant(torch.load(last, weights_only=True), "hyper_parameters.net", payload("creates", folder)), last)
    before = files_of(folder)
    report = write_report(root).read_text()
    assert files_of(folder) == before and "layer_responses.png" in report
    (problem,) = [line for line in report.splitlines() if line.startswith("- theirs: ")]
    assert "holds the network 'builtins.open', which is not one of the project's networks" in problem
