"""How the project is installed and imported: the networks stand alone, and the commands find
their configs however the package is installed."""

from __future__ import annotations

import sys
from pathlib import Path

from commands import REPO, assert_ok, run_command
from run_outputs import read_json
from tiny_runs import TINY_SYNTHETIC_RUN


def test_the_models_import_neither_hydra_nor_lightning(tmp_path: Path) -> None:
    check = (
        "import sys; from resnet_cifar.models import cifar_resnet; cifar_resnet(20); "
        "frameworks = {'hydra', 'omegaconf', 'lightning', 'pytorch_lightning'}; "
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & frameworks); "
        "print('loaded:', loaded)"
    )
    completed = assert_ok(run_command([sys.executable, "-c", check], tmp_path))
    assert "loaded: []" in completed.stdout, completed.output


def test_a_non_editable_install_trains_from_another_folder(tmp_path: Path) -> None:
    # The project built and installed as `pip install .` does (a wheel, no link to the checkout),
    # into a folder of its own that comes first on the path; torch, Lightning and Hydra are this
    # environment's.
    target = tmp_path / "installed"
    install = run_command(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            target,
            REPO,
        ],
        tmp_path,
        timeout=600,
    )
    assert install.returncode == 0, install.output
    environment = {"PYTHONPATH": str(target)}
    where = assert_ok(
        run_command(
            [sys.executable, "-c", "import resnet_cifar; print(resnet_cifar.__file__)"], tmp_path, **environment
        )
    )
    assert where.stdout.startswith(str(target)), where.stdout  # the installed copy, not the checkout
    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    trained = run_command(
        [
            sys.executable,
            "-m",
            "resnet_cifar.train",
            *TINY_SYNTHETIC_RUN,
            "trainer.max_steps=2",
            f"hydra.run.dir={run_dir}",
        ],
        elsewhere,
        **environment,
    )
    assert_ok(trained)
    assert read_json(run_dir / "metrics.json")["steps"] == 2
    assert (run_dir / ".hydra" / "config.yaml").is_file()
