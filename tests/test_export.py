"""resnet-cifar-export: a trained network as safetensors, config.json and a model card, loaded again
anywhere without pickle, Lightning or code named by a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from commands import assert_ok, describe, run_cli, run_command
from crafted_checkpoints import in_the_layout_before
from resnet_cifar.errors import CheckpointError
from resnet_cifar.evaluate import compose_evaluation, evaluate
from resnet_cifar.export import export
from resnet_cifar.models import load_pretrained
from resnet_cifar.models.pretrained import CONFIG_FILE
from resnet_cifar.training.module import ImageClassifier
from run_outputs import read_json

LOGITS = """
import sys, torch
from resnet_cifar.models import load_pretrained
net = load_pretrained(sys.argv[1])
torch.save(net(torch.load(sys.argv[2])), sys.argv[3])
print(" ".join(sorted(m for m in ("lightning", "hydra", "omegaconf") if m in sys.modules)))
"""


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(trained, tmp_path_factory.mktemp("exported") / "resnet8")


def test_a_fresh_interpreter_gets_the_same_logits_without_lightning(
    trained: Path, exported: Path, tmp_path: Path
) -> None:
    images = torch.rand(16, 3, 32, 32)
    torch.save(images, tmp_path / "images.pt")
    command = [sys.executable, "-c", LOGITS, exported, tmp_path / "images.pt", tmp_path / "logits.pt"]
    completed = assert_ok(run_command(command, tmp_path))
    assert completed.stdout.strip() == "", "loading needs neither Lightning nor Hydra"
    checkpoint = torch.load(trained, weights_only=True)
    module = ImageClassifier.load_from_checkpoint(trained).eval()
    with torch.no_grad():
        expected = module.net(images - checkpoint["CIFARDataModule"]["mean_image"])
    assert torch.equal(torch.load(tmp_path / "logits.pt", weights_only=True), expected)


def test_the_folder_holds_weights_settings_and_a_model_card(trained: Path, exported: Path) -> None:
    assert sorted(path.name for path in exported.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((exported / CONFIG_FILE).read_text())
    assert config["architecture"] == "cifar_resnet" and "_target_" not in json.dumps(config)
    assert config["network"] == {"depth": 8, "shortcut": "A", "residual": True, "num_classes": 10}
    card = (exported / "README.md").read_text()
    metrics = read_json(trained.parent.parent / "metrics.json")
    assert "| network | ResNet-8 (option A shortcuts), 75,290 parameters |" in card
    tested = f"{metrics['test_err']:.2f} % on the test images of the run's synthetic data after 2 training steps"
    assert f"| test error | {tested} |" in card
    assert "| recipe | differs from the paper's: 2 steps (paper 64,000);" in card
    assert f"torch {torch.__version__}" in card and "precision 32-true" in card


def test_evaluate_takes_the_folder_as_it_takes_the_checkpoint(trained: Path, exported: Path) -> None:
    from_folder = evaluate(compose_evaluation([f"ckpt_path={exported}"]))
    from_checkpoint = evaluate(compose_evaluation([f"ckpt_path={trained}"]))
    assert (
        from_folder["test_err"] == from_checkpoint["test_err"]
        and from_folder["test_loss"] == from_checkpoint["test_loss"]
    )
    assert Path(f"{exported}.eval.json").is_file()


def test_a_checkpoint_without_its_mean_image_exports_the_same_network(
    trained: Path, exported: Path, tmp_path: Path
) -> None:
    """The previous layout records no mean image: it is computed from the run's data settings."""
    older = tmp_path / "checkpoints" / "last.ckpt"
    older.parent.mkdir()
    torch.save(in_the_layout_before(torch.load(trained, weights_only=True), {"model": {}, "module": {}}), older)
    checkpoint = torch.load(trained, weights_only=True)
    torch.save(
        {
            **torch.load(older, weights_only=True),
            "datamodule_hyper_parameters": checkpoint["datamodule_hyper_parameters"],
        },
        older,
    )
    again = export(older, tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (exported / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda config: config | {"_target_": "os.system"}, "config.json has unknown keys '_target_'"),
        (lambda config: config | {"network": {**config["network"], "depth": "8"}}, "depth='8' is not of the type int"),
        (
            lambda config: config | {"network": {**config["network"], "init": {"_target_": "x"}}},
            "network setting init is a dict",
        ),
        (lambda config: config | {"network": {**config["network"], "width": 2}}, "'width' is not a parameter of"),
        (lambda config: config | {"architecture": "os.system"}, "is a 'os.system', not the paper's network"),
    ],
)
def test_a_tampered_config_is_refused(exported: Path, tmp_path: Path, change, reason: str) -> None:
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    (tampered / CONFIG_FILE).write_text(json.dumps(change(json.loads((exported / CONFIG_FILE).read_text()))))
    with pytest.raises(CheckpointError, match=reason.replace("(", r"\(")):
        load_pretrained(tampered)


def test_evaluate_refuses_a_tampered_folder_with_one_error_line(exported: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    config = json.loads((exported / CONFIG_FILE).read_text())
    (tampered / CONFIG_FILE).write_text(json.dumps(config | {"network": {**config["network"], "depth": [8]}}))
    completed = run_cli("evaluate", f"ckpt_path={tampered}", cwd=tmp_path / "cwd")
    assert completed.returncode == 2 and "Traceback" not in completed.output, describe(completed)
    (error,) = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert (
        error
        == f"error: exported network {tampered}: network setting depth=[8] is not of the type int; nothing was built"
    )
    assert not Path(f"{tampered}.eval.json").exists()
