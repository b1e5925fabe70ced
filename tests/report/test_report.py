"""The report on fabricated run directories: tables, failed runs, plots, bad input."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from commands import assert_ok, run_cli
from resnet_cifar.models import cifar_resnet
from resnet_cifar.report import write_report
from resnet_cifar.report.runs import read_run
from resnet_cifar.report.tables import PAPER_TEST_ERR
from run_outputs import report_row as row

CONFIG = """\
model:
  _target_: resnet_cifar.models.cifar_resnet
  depth: {depth}
  shortcut: {shortcut}
  residual: {residual}
  num_classes: ${{data.num_classes}}
data:
  dataset: {dataset}
  num_classes: 10
  batch_size: 128
  val_size: 5000
  padding: 4
  seed: ${{seed}}
optimizer:
  lr: 0.1
  momentum: 0.9
  weight_decay: 0.0001
scheduler:
  milestones: {milestones}
  gamma: 0.1
trainer:
  max_steps: {max_steps}
  precision: {precision}
logger:
  tensorboard:
    save_dir: ${{hydra:runtime.output_dir}}
callbacks:
  model_checkpoint:
    dirpath: ${{hydra:runtime.output_dir}}/checkpoints
{warmup}seed: {seed}
"""
# The paper's recipe (Sec. 4.2), and a short study's: 704 steps on synthetic data.
PAPER = {"max_steps": 64000, "milestones": [32000, 48000], "dataset": "cifar10", "precision": "32-true", "warmup": ""}
SHORT = {**PAPER, "max_steps": 704, "milestones": [352, 528], "dataset": "synthetic"}
WARMUP = "  lr_warmup:\n    _target_: resnet_cifar.training.callbacks.LrWarmupUntilTrainError\n"

# (variant, depth, seed) -> test error; the means and stds below are computed from these by hand.
RESULTS = {
    ("resnet", 20, 0): 8.5,
    ("resnet", 20, 1): 9.0,
    ("resnet", 20, 2): 8.9,
    ("resnet", 32, 0): 7.6,
    ("resnet", 32, 1): 7.2,
    ("plain", 20, 0): 9.4,
    ("plain", 20, 1): 9.8,
    ("plain", 32, 0): 10.5,
}


def params(depth: int, residual: bool = True, shortcut: str = "A") -> int:
    return sum(p.numel() for p in cifar_resnet(depth, shortcut, residual).parameters())


def write_run(
    root: Path,
    name: str,
    depth: int,
    seed: int,
    residual: bool = True,
    shortcut: str = "A",
    test_err: float | None = None,
    metrics_text: str | None = None,
    steps: int = 40,
    recipe: dict = PAPER,
) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        CONFIG.format(depth=depth, shortcut=shortcut, residual=str(residual).lower(), seed=seed, **recipe)
    )
    writer = SummaryWriter(log_dir=str(run))
    for step in range(0, steps + 1, 10):
        writer.add_scalar("train/loss", 2.0 - step / 100, step)
        writer.add_scalar("train/err", 80.0 - step + depth / 10, step)
        writer.add_scalar("val/err", 85.0 - step + depth / 10 + seed, step)
    writer.close()
    if metrics_text is not None:
        (run / "metrics.json").write_text(metrics_text)
    elif test_err is not None:
        metrics = {"test_err": test_err, "val_err": test_err + 1, "train_err": 1.0, "steps": steps}
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for (variant, depth, seed), err in RESULTS.items():
        write_run(
            root, f"{variant}/model.depth={depth},seed={seed}", depth, seed, residual=variant == "resnet", test_err=err
        )
    write_run(root, "resnet/B/model.depth=20,seed=0", 20, 0, shortcut="B", test_err=8.1)
    write_run(root, "crashed/model.depth=32,seed=2", 32, 2, steps=20)  # no metrics.json
    write_run(root, "halfway/model.depth=32,seed=3", 32, 3, metrics_text='{"test_err": 7.')  # half-written
    write_run(root, "killed/model.depth=20,seed=4", 20, 4, metrics_text='{"steps": 10}')  # no test_err
    (root / "not_a_run").mkdir()
    (root / "not_a_run" / "metrics.json").write_text('{"test_err": 1.0}')
    return root


@pytest.fixture(scope="module")
def report(sweep: Path) -> str:
    completed = assert_ok(run_cli("report", str(sweep), cwd=sweep.parent / "cwd"))
    assert str(sweep / "report.md") in completed.stdout
    return (sweep / "report.md").read_text()


@pytest.mark.parametrize(("variant", "depth"), [("resnet", 20), ("resnet", 32), ("plain", 20), ("plain", 32)])
def test_mean_std_min_n_and_params(report: str, variant: str, depth: int) -> None:
    errors = [err for (v, d, _), err in RESULTS.items() if (v, d) == (variant, depth)]
    mean = sum(errors) / len(errors)
    std = (sum((e - mean) ** 2 for e in errors) / (len(errors) - 1)) ** 0.5 if len(errors) > 1 else None
    assert std is None or abs(std - statistics.stdev(errors)) < 1e-12
    cells = row(report, variant, depth)
    assert cells[2].endswith(f"({params(depth, variant == 'resnet'):,})")
    assert cells[3] == str(len(errors))
    assert cells[4] == f"{mean:.2f} ± {'—' if std is None else f'{std:.2f}'}"
    assert cells[5] == f"{min(errors):.2f}"


def test_hand_computed_values(report: str) -> None:
    # resnet-20: 8.5, 9.0, 8.9 -> mean 8.8, sample std sqrt(0.14 / 2) = 0.2646
    assert row(report, "resnet", 20)[4] == "8.80 ± 0.26"
    # resnet-32: 7.6, 7.2 -> mean 7.4, sample std sqrt(0.08) = 0.2828
    assert row(report, "resnet", 32)[4] == "7.40 ± 0.28"
    assert row(report, "plain", 32)[4] == "10.50 ± —"


def test_paper_numbers_beside_resnets_only(report: str) -> None:
    assert row(report, "resnet", 20)[6] == f"{PAPER_TEST_ERR[20]:.2f}" == "8.75"
    assert row(report, "resnet", 32)[6] == "7.51"
    assert row(report, "resnet-B", 20)[6] == "—"  # the paper's numbers are for option A
    assert row(report, "resnet-B", 20)[2].endswith(f"({params(20, shortcut='B'):,})")
    assert len(row(report, "plain", 20)) == 6  # the plain table has no paper column


def test_plain_nets_in_their_own_table(report: str) -> None:
    resnets, plain = report.split("## ResNets")[1].split("## Plain nets")
    assert "| resnet | 20 |" in resnets and "| plain |" not in resnets
    assert "| plain | 20 |" in plain and "| resnet |" not in plain.split("##")[0]


def test_failed_and_unfinished_runs_are_listed(report: str) -> None:
    failed = report.split("## Failed or unfinished runs")[1]
    assert re.search(r"crashed/model.depth=32,seed=2 \| no metrics.json.*last logged step 20", failed)
    assert re.search(r"halfway/model.depth=32,seed=3 \| metrics.json cannot be read .*half-written or corrupt", failed)
    assert re.search(r"killed/model.depth=20,seed=4 \| metrics.json has no finite test_err", failed)
    assert "not_a_run" not in report
    responses = report.split("Layer responses (Fig. 7) not computed for:")[1].split("##")[0]
    assert "resnet/model.depth=20,seed=0: checkpoint" in responses and "does not exist" in responses
    assert "9 finished, 3 failed or unfinished" in report


@pytest.mark.parametrize("name", ["training_curves.png", "error_vs_depth.png"])
def test_plots_are_real_images(sweep: Path, report: str, name: str) -> None:
    assert not (sweep / "layer_responses.png").exists()  # Fig. 7 needs checkpoints; these runs have none
    assert f"]({name})" in report
    with Image.open(sweep / name) as image:
        assert image.format == "PNG"
        assert image.width >= 500 and image.height >= 400
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # lines, text and legend, not a blank canvas


def test_resumed_runs_keep_the_latest_value_of_a_step(tmp_path: Path) -> None:
    run = write_run(tmp_path, "run", 20, 0, test_err=8.0, steps=20)
    writer = SummaryWriter(log_dir=str(run))  # a second event file, as after a resume at step 10
    writer.add_scalar("val/err", 1.5, 20)
    writer.close()
    curve = dict(read_run(run).curves["val/err"])
    assert sorted(curve) == [0, 10, 20] and curve[20] == 1.5


def test_only_failed_runs_still_give_a_report(tmp_path: Path) -> None:
    write_run(tmp_path, "a", 20, 0)
    text = write_report(tmp_path).read_text()
    assert "No run has finished yet" in text and "| a | no metrics.json" in text


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_no_runs_is_one_error_line(tmp_path: Path, make: str) -> None:
    target = tmp_path / "target"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("x")
    completed = run_cli("report", str(target), "--no-responses", cwd=tmp_path)
    assert completed.returncode == 2, completed.output
    assert completed.stderr.strip().startswith("error: ") and len(completed.stderr.strip().splitlines()) == 1
    assert "Traceback" not in completed.output


def test_no_responses_skips_fig_7(tmp_path: Path) -> None:
    write_run(tmp_path, "a", 20, 0, test_err=8.0)
    text = write_report(tmp_path, responses=False).read_text()
    assert "| resnet | 20 |" in text and "Fig. 7" not in text and "layer_responses" not in text


# --- recipes: runs trained unlike the paper are stated, not compared, and not averaged in ---


def section(report: str, heading: str) -> str:
    """The text of report.md from ``## heading`` (exactly) to the next heading."""
    parts = report.split(f"\n## {heading}\n")
    assert len(parts) == 2, report
    return parts[1].split("\n## ")[0]


@pytest.fixture(scope="module")
def mixed_recipes(tmp_path_factory: pytest.TempPathFactory) -> str:
    """ResNet-20 with the paper's recipe, the same net in a 704-step synthetic study, in bf16,
    and a ResNet-110 with and without the paper's warm-up."""
    root = tmp_path_factory.mktemp("recipes")
    write_run(root, "paper/seed=0", 20, 0, test_err=8.0)
    write_run(root, "paper/seed=1", 20, 1, test_err=9.0)
    write_run(root, "short/seed=0", 20, 0, test_err=43.0, recipe=SHORT)
    write_run(root, "short/seed=1", 20, 1, test_err=45.0, recipe=SHORT)
    write_run(root, "short-plain/seed=0", 20, 0, residual=False, test_err=50.0, recipe=SHORT)
    write_run(root, "bf16/seed=0", 20, 0, test_err=8.6, recipe={**PAPER, "precision": "bf16-mixed"})
    write_run(root, "r110/seed=0", 110, 0, test_err=6.9)
    write_run(root, "r110-warm/seed=0", 110, 0, test_err=6.5, recipe={**PAPER, "warmup": WARMUP})
    return write_report(root, responses=False).read_text()


def test_each_recipe_gets_its_own_table_stating_how_it_differs(mixed_recipes: str) -> None:
    paper = section(mixed_recipes, "ResNets, recipe 1")
    assert "Recipe: the paper's (Sec. 4.2)" in paper
    assert row(paper, "resnet", 20)[3:7] == ["2", "8.50 ± 0.71", "8.00", "8.75"]
    short = [text for text in mixed_recipes.split("\n## ")[1:] if "704 steps (paper 64,000)" in text]
    resnets, plain = sorted(short, key=lambda text: not text.startswith("ResNets"))
    for text in (resnets, plain):
        assert "lr ÷10 at 352 and 528 (paper 32,000 and 48,000)" in text and "data: synthetic (paper CIFAR-10)" in text
    # Not averaged with the paper's runs, and not set beside the paper's number.
    assert row(resnets, "resnet", 20)[3:7] == ["2", "44.00 ± 1.41", "43.00", "not comparable"]
    assert row(plain, "plain", 20)[3:5] == ["1", "50.00 ± —"]
    assert "43.00" not in paper and "8.50" not in resnets


def test_mixed_precision_is_stated_and_stays_comparable(mixed_recipes: str) -> None:
    (bf16,) = [text for text in mixed_recipes.split("\n## ")[1:] if "bf16-mixed precision (paper fp32)" in text]
    assert "steps" not in bf16.split("Recipe:")[1].split("\n")[0]  # nothing else differs
    assert row(bf16, "resnet", 20)[3:7] == ["1", "8.60 ± —", "8.60", "8.75"]


def test_resnet_110_is_comparable_with_the_papers_warm_up_only(mixed_recipes: str) -> None:
    with_warmup, without = [text for text in mixed_recipes.split("\n## ")[1:] if "| resnet | 110 |" in text]
    assert "Recipe: the paper's" in with_warmup and row(with_warmup, "resnet", 110)[6] == "6.43"
    assert "no lr warm-up (paper warms up ResNet-110)" in without
    assert row(without, "resnet", 110)[6] == "not comparable"


def test_runs_of_different_recipes_are_grouped_apart(tmp_path: Path) -> None:
    from resnet_cifar.report.runs import read_runs
    from resnet_cifar.report.tables import group_runs

    write_run(tmp_path, "a", 20, 0, test_err=8.0)
    write_run(tmp_path, "b", 20, 1, test_err=40.0, recipe=SHORT)
    groups = group_runs(read_runs(tmp_path))
    assert sorted((len(g.errors), g.mean, g.comparable) for g in groups) == [(1, 8.0, True), (1, 40.0, False)]
