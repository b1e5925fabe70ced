"""Fidelity to the paper's recipe: the project's training path against a plain-PyTorch rendition.

Measures the test error of ResNet-20 trained under the paper's CIFAR-10 recipe (He et al. 2016,
Sec. 4.2), compressed to ``--steps S`` optimizer steps (lr 0.1, divided by 10 at S/2 and 3S/4;
SGD, momentum 0.9, weight decay 1e-4, batch 128; 45k/5k train/val split with split seed 0;
pad-4 crop + flip; per-pixel mean subtraction), over several seeds, through two paths on the
same images and the same split:

  project    ``python -m resnet_cifar.train`` with the default config, in a subprocess:
             data.root, seed, trainer.max_steps, scheduler.milestones, trainer.accelerator and
             hydra.run.dir set on its command line; the test error is that run's metrics.json
             ``test_err`` (the final weights)
  reference  the recipe written the plain way, sharing nothing with the project except the
             network definition (``resnet_cifar.models.cifar_resnet``): a torchvision-CIFAR10-
             style Dataset of PIL images decoded from the image folder, its own seeded split,
             ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip`` + ``ToTensor`` + subtraction
             of the training split's mean image, a ``DataLoader`` (shuffle, batch 128, the
             epoch's short last batch kept), ``torch.optim.SGD`` + ``MultiStepLR`` stepped every
             iteration, a for-loop until S steps, test on the final weights

For each path it prints every seed's test error and their mean ± sample standard deviation, and
then the difference of the means (project - reference) with its 95 % confidence interval
(Welch's t). An interval that excludes zero says the two paths train differently; one that
includes it bounds the difference by its width.

    # the CPU study: S = 3000, seeds 0-3, one thread per run, two runs at a time
    python bench/fidelity.py --data-root /data/cifar10-jpeg --steps 3000 --seeds 4 \\
        --threads 1 --jobs 2 --out fidelity-out
    # a rehearsal: does everything run and the table print?
    python bench/fidelity.py --data-root /data/cifar10-jpeg --steps 20 --seeds 1 --out /tmp/fid
    # the GPU target: the paper's full 64k-step schedule, 5 seeds per path
    python bench/fidelity.py --device cuda --data-root /data/cifar10-jpeg --steps 64000 \\
        --seeds 5 --jobs 4 --out fidelity-gpu
    # the table from the runs finished so far
    python bench/fidelity.py --out fidelity-out --report-only

The data root is an image folder, ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``. Every run
runs in its own subprocess; runs are started in interleaved order (project seed 0, reference
seed 0, project seed 1, ...), ``--jobs`` at a time, so that both paths share the machine alike.
Under ``--out`` each finished run writes ``runs/<path>-seed<k>.json`` (path, seed, test_err,
wall_s, steps, ...), its log ``logs/<path>-seed<k>.log`` and its working folder
``<path>/seed<k>``. A run whose JSON exists is skipped, so an interrupted study resumes where it
stopped (an interrupted project run also resumes from its own last checkpoint).

The project path runs whatever ``resnet_cifar`` the interpreter imports (PYTHONPATH first):
point PYTHONPATH at a frozen copy of the source to measure one version while the code changes.

This file holds the command line; the reference path is fidelity_reference.py, the runs and
their records fidelity_study.py, and the table fidelity_report.py (its interval:
fidelity_stats.py), all under the recipe of fidelity_recipe.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fidelity_reference import reference_run
from fidelity_report import report
from fidelity_study import Run, run_study, work_dir

PATHS = ("project", "reference")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Test error of ResNet-20 under the paper's recipe compressed to --steps, over seeds, through "
            "the project's training path and an independent plain-PyTorch reference; prints both and the "
            "difference of the means with its 95 % Welch interval. On a GPU (--device cuda) the target is "
            "the full schedule: --steps 64000 --seeds 5."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-root", help="image folder with train/<class>/*.jpg and test/<class>/*.jpg")
    parser.add_argument(
        "--steps", type=int, default=3000, help="optimizer steps S; lr /10 at S/2 and 3S/4 (the paper: 64000, on a GPU)"
    )
    parser.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 per path (the GPU target: 5)")
    parser.add_argument("--seed-list", type=int, nargs="+", help="explicit seeds, instead of --seeds")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="which paths to run")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the project runs with trainer.accelerator=gpu (and its GPU default, bf16-mixed; "
        "--project-override trainer.precision=32-true for fp32 like the reference)",
    )
    parser.add_argument("--threads", type=int, help="torch threads per run (OMP_NUM_THREADS); default: torch's own")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--workers", type=int, help="reference DataLoader workers (default 0 on the CPU, 4 on a GPU)")
    parser.add_argument(
        "--project-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra Hydra override for the project runs (repeatable)",
    )
    parser.add_argument("--log-every", type=int, default=100, help="reference: a progress line every N steps")
    parser.add_argument("--out", type=Path, default=Path("fidelity-out"), help="where runs, logs and results go")
    parser.add_argument("--report-only", action="store_true", help="print the table from the finished runs only")
    parser.add_argument("--run-reference", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.report_only and not args.data_root:
        parser.error("--data-root is required (except with --report-only)")
    if args.steps < 4:
        parser.error("--steps must be at least 4 (milestones at S/2 and 3S/4)")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_reference is not None:
        run = Run("reference", args.run_reference)
        reference_run(args, run.seed, work_dir(args.out, run) / "result.json")
        return 0
    ok = True
    if not args.report_only:
        seeds = args.seed_list if args.seed_list else list(range(args.seeds))
        ok = run_study(args, seeds)
    print(report(args.out, args.paths), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
