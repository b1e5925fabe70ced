"""The report says what its runs were trained with, marks rows that mix software, devices or code,
and reads run folders from elsewhere as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_runs import H100, write_run
from resnet_cifar.report import write_report
from run_outputs import report_row as row


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """ResNet-20 on one H100 with one code (uniform); ResNet-32 over another torch, a modified tree
    and another GPU; ResNet-44 with one run from before runs recorded their environment, ResNet-56
    with only such a run."""
    root = tmp_path_factory.mktemp("study")
    write_run(root, "20/0", 20, 0, H100)
    write_run(root, "20/1", 20, 1, H100)
    write_run(root, "32/0", 32, 0, H100)
    write_run(root, "32/1", 32, 1, {**H100, "torch": "2.5.1", "tree_modified": True})
    write_run(root, "32/2", 32, 2, {**H100, "device": "NVIDIA A100-SXM4-40GB"})
    write_run(root, "44/0", 44, 0, H100)
    write_run(root, "44/1", 44, 1, None)
    write_run(root, "56/0", 56, 0, None)
    return write_report(root, responses=False).read_text()


def test_a_row_of_runs_from_one_environment_is_not_marked(report: str) -> None:
    assert row(report, "resnet", 20)[7] == "same"
    assert row(report, "resnet", 56)[7] == "not recorded"


def test_a_row_mixing_software_devices_or_commits_says_so(report: str) -> None:
    cell = row(report, "resnet", 32)[7]
    assert cell.startswith("mixed: ")
    assert "commit 4612349 (2 runs), 4612349-modified (1 run)" in cell
    assert "torch 2.5.1 (1 run), 2.6.0 (2 runs)" in cell
    assert "device NVIDIA A100-SXM4-40GB (1 run), NVIDIA H100 80GB HBM3 (2 runs)" in cell
    assert "Python" not in cell and "Lightning" not in cell  # only what differs
    assert row(report, "resnet", 44)[7] == "mixed: environment not recorded for 1 of 2 runs"


def test_the_report_lists_the_environment_of_the_study(report: str) -> None:
    section = report.split("\n## Environment\n")[1].split("\n## ")[0]
    assert "Not recorded by 2 of 8 runs." in section
    assert "| torch | 2.5.1 (1 run), 2.6.0 (5 runs) |" in section
    assert "| Lightning | 2.6.0 |" in section and "| CUDA | 12.4 |" in section
    assert "| torch built with CUDA | 12.4 |" in section and "| precision | bf16-mixed |" in section


def test_cpu_runs_that_recorded_torchs_build_as_cuda_are_not_mixed(tmp_path: Path) -> None:
    """Runs recorded before `torch_built_with_cuda` have torch's build under `cuda` and `cudnn`, on
    the CPU too: beside a CPU run recorded since, neither shows a CUDA or cuDNN that ran."""
    before = {**H100, "device": "AMD EPYC 7B13", "device_type": "cpu", "precision": "32-true"}
    before.pop("torch_built_with_cuda", None)
    since = {**before, "cuda": None, "cudnn": None, "torch_built_with_cuda": "12.4"}
    write_run(tmp_path, "before", 20, 0, before)
    write_run(tmp_path, "since", 20, 1, since)
    text = write_report(tmp_path, responses=False).read_text()
    assert len(row(text, "resnet", 20)) == 7  # no environment column: nothing mixed
    section = text.split("\n## Environment\n")[1]
    assert "| CUDA | none |" in section and "| cuDNN | none |" in section
    assert "| torch built with CUDA | 12.4 |" in section


def test_runs_without_a_record_give_an_unmarked_table(tmp_path: Path) -> None:
    write_run(tmp_path, "a", 20, 0, None)
    write_run(tmp_path, "b", 20, 1, None)
    text = write_report(tmp_path, responses=False).read_text()
    assert len(row(text, "resnet", 20)) == 7 and "do not record their environment" in text


def test_a_run_folder_is_read_without_running_its_resolvers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("A_SECRET", "hunter2")
    run = write_run(tmp_path, "a", 20, 0, H100)
    config = (run / ".hydra" / "config.yaml").read_text().replace("dataset: cifar10", "dataset: ${oc.env:A_SECRET}")
    (run / ".hydra" / "config.yaml").write_text(config)
    text = write_report(tmp_path, responses=False).read_text()
    assert "hunter2" not in text and "data.dataset not recorded" in text
