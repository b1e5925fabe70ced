"""Every run records what produced it: software, device, precision, the code's version and commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

import resnet_cifar.provenance as provenance
from resnet_cifar.provenance import (
    SHORT_FORM_KEYS,
    code_commit,
    commit_label,
    cudnn_version,
    device_label,
    run_environment,
)
from small_fits import bare_trainer
from tiny_runs import TINY_SYNTHETIC_RUN, run_training

FULL_RECORD = {
    "resnet_cifar",
    "commit",
    "tree_modified",
    "python",
    "torch",
    "torch_built_with_cuda",
    "lightning",
    "hydra",
    "cuda",
    "cudnn",
    "device",
    "device_type",
    "devices",
    "precision",
    "torch_threads",
    "platform",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    run_training(run_dir, *TINY_SYNTHETIC_RUN, "trainer.max_steps=2")
    return run_dir


def test_metrics_json_records_the_software_device_and_code(run_dir: Path) -> None:
    import json

    import hydra
    import lightning

    environment = json.loads((run_dir / "metrics.json").read_text())["environment"]
    assert set(environment) == FULL_RECORD
    assert (environment["python"], environment["torch"]) == (platform.python_version(), torch.__version__)
    assert (environment["lightning"], environment["hydra"]) == (lightning.__version__, hydra.__version__)
    # A CPU run: no CUDA or cuDNN ran, whatever torch was built with.
    assert (environment["cuda"], environment["cudnn"]) == (None, None)
    assert environment["torch_built_with_cuda"] == torch.version.cuda
    assert (environment["device_type"], environment["devices"], environment["precision"]) == ("cpu", 1, "32-true")
    assert environment["device"] and environment["resnet_cifar"] not in ("", None)
    # The tests run from the project's checkout: a commit of it (HEAD then, or since), and whether
    # its files were changed.
    ancestor = ["git", "merge-base", "--is-ancestor", environment["commit"], "HEAD"]
    assert subprocess.run(ancestor, cwd=Path(__file__).parent).returncode == 0, environment["commit"]
    assert isinstance(environment["tree_modified"], bool)


def test_the_trackers_get_the_short_form(run_dir: Path) -> None:
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())  # what every tracker was given
    shown = {key: hparams[key] for key in SHORT_FORM_KEYS}
    assert shown["environment.precision"] == "32-true" and shown["environment.torch"] == torch.__version__
    assert shown["environment.device"] and len(shown["environment.commit"].split("-")[0]) == 7


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_the_commit_is_that_of_the_checkout_holding_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    package = checkout / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "code")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", package)
    commit, modified = code_commit()
    assert len(commit) == 40 and modified is False
    provenance.running_code.cache_clear()
    assert provenance.running_code() == (commit, False)  # as the process started: a command asks at once
    (checkout / "untracked.txt").write_text("not code")
    assert code_commit() == (commit, False)
    (package / "__init__.py").write_text("changed = True\n")
    assert code_commit() == (commit, True)
    assert provenance.running_code() == (commit, False)  # what this process imported is not the change
    provenance.running_code.cache_clear()
    # An installed copy inside some other checkout (a virtual environment in a repository) has none.
    installed = checkout / "venv" / "pkg"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", installed)
    assert code_commit() == (None, None)


def test_labels_of_the_short_form() -> None:
    assert commit_label({"commit": "4612349abcdef", "tree_modified": True}) == "4612349-modified"
    assert commit_label({"commit": None}) == "unknown"
    assert device_label({"device": "NVIDIA H100 80GB HBM3", "devices": 4}) == "4 x NVIDIA H100 80GB HBM3"
    assert device_label({"device": "NVIDIA H100 80GB HBM3", "devices": 1}) == "NVIDIA H100 80GB HBM3"


@pytest.fixture
def cuda_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch as a CUDA 13.0 build with cuDNN 9.24.0 at hand, as on a machine with a GPU or not."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 92400)


def test_a_cpu_run_records_no_cuda_or_cudnn(cuda_build: None, tmp_path: Path) -> None:
    environment = run_environment(bare_trainer(tmp_path))
    assert (environment["cuda"], environment["cudnn"]) == (None, None)
    assert environment["torch_built_with_cuda"] == "13.0"


def test_a_gpu_run_records_the_cuda_and_cudnn_it_ran(cuda_build: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 80GB HBM3")
    # What run_environment reads of a Trainer on one GPU.
    gpu = SimpleNamespace(root_device=torch.device("cuda", 0))
    trainer = SimpleNamespace(strategy=gpu, world_size=1, precision="bf16-mixed")
    environment = run_environment(trainer)
    assert (environment["cuda"], environment["cudnn"]) == ("13.0", "9.24.0")
    assert environment["torch_built_with_cuda"] == "13.0"
    assert (environment["device"], environment["device_type"]) == ("NVIDIA H100 80GB HBM3", "cuda")
    monkeypatch.setattr(torch.backends.cudnn, "enabled", False)  # cuDNN turned off: none of it ran
    assert run_environment(trainer)["cudnn"] is None


@pytest.mark.parametrize(("number", "text"), [(91002, "9.10.2"), (90100, "9.1.0"), (8902, "8.9.2"), (None, None)])
def test_cudnn_versions_read_as_released(number: int | None, text: str | None, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: number is not None)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: number)
    assert cudnn_version() == text
