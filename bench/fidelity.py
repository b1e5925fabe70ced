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
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PATHS = ("project", "reference")
SPLIT_SEED = 0
VAL_SIZE = 5000
BATCH_SIZE = 128
EVAL_BATCH_SIZE = 1000
LR, MOMENTUM, WEIGHT_DECAY, GAMMA = 0.1, 0.9, 1e-4, 0.1
DEPTH = 20
PADDING = 4


def milestones(steps: int) -> list[int]:
    """The paper's 32k and 48k of 64k steps, scaled to ``steps``."""
    return [steps // 2, 3 * steps // 4]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# The reference path: one run, in its own process (``--run-reference SEED``)


class ImageFolderCIFAR:
    """CIFAR-10 in the style of ``torchvision.datasets.CIFAR10``, read from an image folder.

    ``data`` is N x 32 x 32 x 3 uint8 and ``targets`` a list of labels; an item is a PIL image
    (through ``transform``) and its label. Classes are the split's folders in sorted order, and
    the images of each class are in sorted file-name order: the order of the project's reader,
    so that the same seeded split selects the same images.
    """

    def __init__(self, root: Path, split: str, transform: Callable[[Any], Any] | None = None) -> None:
        import numpy as np
        from PIL import Image

        split_dir = root / split
        self.classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        files: list[Path] = []
        self.targets: list[int] = []
        for label, name in enumerate(self.classes):
            class_files = sorted(p for p in (split_dir / name).iterdir() if p.is_file() and not p.name.startswith("."))
            files += class_files
            self.targets += [label] * len(class_files)
        self.data = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
        for i, path in enumerate(files):
            with Image.open(path) as image:
                self.data[i] = np.asarray(image.convert("RGB"))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


class Subset:
    """The items of ``dataset`` at ``indices``, with their own transform."""

    def __init__(self, dataset: ImageFolderCIFAR, indices: Sequence[int], transform: Callable[[Any], Any]) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        i = self.indices[index]
        return self.transform(Image.fromarray(self.dataset.data[i])), self.dataset.targets[i]


class SubtractMean:
    """``tensor - mean``: the per-pixel mean image (3 x 32 x 32) of the training split."""

    def __init__(self, mean: Any) -> None:
        self.mean = mean

    def __call__(self, tensor: Any) -> Any:
        return tensor - self.mean


def train_val_indices(num_images: int, val_size: int, split_seed: int) -> tuple[list[int], list[int]]:
    """A seeded random permutation of the training images; its first ``val_size`` are held out."""
    import torch

    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(split_seed)).tolist()
    return sorted(order[val_size:]), sorted(order[:val_size])


def reference_run(args: argparse.Namespace, seed: int, result_file: Path) -> None:
    """Train and test one reference run; write its result to ``result_file``."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from torchvision import transforms

    import resnet_cifar
    from resnet_cifar.models import cifar_resnet

    started_at, start = utc_now(), time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    workers = args.workers if args.workers is not None else (0 if device.type == "cpu" else 4)
    print(
        f"reference seed {seed}: resnet_cifar from {Path(resnet_cifar.__file__).parent}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {workers} loader workers",
        flush=True,
    )

    torch.manual_seed(seed)
    net = cifar_resnet(depth=DEPTH).to(device)

    root = Path(args.data_root)
    train_full = ImageFolderCIFAR(root, "train")
    test_raw = ImageFolderCIFAR(root, "test")
    if train_full.classes != test_raw.classes:
        raise SystemExit(f"class folders differ between {root / 'train'} and {root / 'test'}")
    train_idx, val_idx = train_val_indices(len(train_full), VAL_SIZE, SPLIT_SEED)
    mean = torch.from_numpy(train_full.data[train_idx].astype("float64").mean(axis=0) / 255)
    mean = mean.permute(2, 0, 1).float().contiguous()  # H x W x C -> C x H x W, as ToTensor
    train_transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=PADDING),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            SubtractMean(mean),
        ]
    )
    eval_transform = transforms.Compose([transforms.ToTensor(), SubtractMean(mean)])
    train_set = Subset(train_full, train_idx, train_transform)
    val_set = Subset(train_full, val_idx, eval_transform)
    test_set = Subset(test_raw, range(len(test_raw)), eval_transform)
    pin = device.type == "cuda"
    train_loader = DataLoader(
        train_set,
        batch_size=BATCH_SIZE,
        shuffle=True,
        drop_last=False,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )
    print(
        f"reference seed {seed}: {len(train_set)} train / {len(val_set)} val / {len(test_set)} test images, "
        f"data ready after {time.perf_counter() - start:.1f} s",
        flush=True,
    )

    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones(args.steps), gamma=GAMMA)

    net.train()
    step, epoch = 0, 0
    train_start = last_line = time.perf_counter()
    while step < args.steps:
        for images, labels in train_loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            now = time.perf_counter()
            if step == args.steps or step % args.log_every == 0 or now - last_line >= 60:
                last_line = now
                rate = step / (now - train_start)
                print(
                    f"reference seed {seed}: step {step}/{args.steps} epoch {epoch} loss {loss.item():.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.4g} {rate:.2f} steps/s "
                    f"{(args.steps - step) / rate / 60:.1f} min left",
                    flush=True,
                )
            if step == args.steps:
                break
        epoch += 1
    train_s = time.perf_counter() - train_start

    def evaluate(dataset: Subset) -> tuple[float, float]:
        loader = DataLoader(dataset, batch_size=EVAL_BATCH_SIZE, shuffle=False, num_workers=workers, pin_memory=pin)
        wrong, loss_sum, seen = 0, 0.0, 0
        net.eval()
        with torch.no_grad():
            for images, labels in loader:
                images, labels = images.to(device), labels.to(device)
                logits = net(images)
                loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
                wrong += int((logits.argmax(dim=1) != labels).sum())
                seen += len(labels)
        return 100 * wrong / seen, loss_sum / seen

    test_err, test_loss = evaluate(test_set)
    val_err, val_loss = evaluate(val_set)
    result = {
        "test_err": test_err,
        "test_loss": test_loss,
        "val_err": val_err,
        "val_loss": val_loss,
        "steps": step,
        "train_s": round(train_s, 3),
        "started_at": started_at,
        "finished_at": utc_now(),
        "package": str(Path(resnet_cifar.__file__).parent),
    }
    print(f"reference seed {seed}: test error {test_err:.2f} % (val {val_err:.2f} %) after {step} steps", flush=True)
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# The study: one subprocess per run, then the table


@dataclass(frozen=True)
class Run:
    path: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.path}-seed{self.seed}"


def run_json(out: Path, run: Run) -> Path:
    return out / "runs" / f"{run.name}.json"


def work_dir(out: Path, run: Run) -> Path:
    return out / run.path / f"seed{run.seed}"


def child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def project_command(args: argparse.Namespace, run: Run) -> list[str]:
    low, high = milestones(args.steps)
    return [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        f"data.root={Path(args.data_root).resolve()}",
        f"seed={run.seed}",
        f"trainer.max_steps={args.steps}",
        f"scheduler.milestones=[{low},{high}]",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"hydra.run.dir={work_dir(args.out, run).resolve()}",
        *args.project_override,
    ]


def reference_command(args: argparse.Namespace, run: Run) -> list[str]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run-reference",
        str(run.seed),
        "--data-root",
        str(Path(args.data_root).resolve()),
        "--steps",
        str(args.steps),
        "--device",
        args.device,
        "--out",
        str(args.out.resolve()),
        "--log-every",
        str(args.log_every),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    return command


def project_package() -> str:
    """Where ``python -m resnet_cifar.train`` imports the project from, with this environment."""
    spec = importlib.util.find_spec("resnet_cifar")
    return str(Path(spec.origin).parent) if spec and spec.origin else "?"


_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(f"[{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}] {message}", flush=True)


def execute(args: argparse.Namespace, run: Run) -> bool:
    """Run ``run`` in a subprocess, logging to its log file; write its JSON if it succeeds."""
    log_file = args.out / "logs" / f"{run.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    folder = work_dir(args.out, run)
    folder.mkdir(parents=True, exist_ok=True)
    command = project_command(args, run) if run.path == "project" else reference_command(args, run)
    say(f"start {run.name} (log {log_file})")
    start = time.perf_counter()
    with open(log_file, "a") as log:
        log.write(f"# {utc_now()} {' '.join(command)}\n")
        log.flush()
        returncode = subprocess.call(
            command, stdout=log, stderr=subprocess.STDOUT, env=child_env(args.threads), cwd=folder
        )
    wall_s = time.perf_counter() - start
    if returncode != 0:
        say(f"FAILED {run.name}: exit status {returncode} after {wall_s:.0f} s; see {log_file}")
        return False
    if run.path == "project":
        metrics = json.loads((folder / "metrics.json").read_text())
        result = {
            key: metrics.get(key)
            for key in (
                "test_err",
                "test_loss",
                "val_err",
                "val_loss",
                "steps",
                "train_s",
                "started_at",
                "finished_at",
                "resumed_from",
            )
        }
        result["package"] = project_package()
    else:
        result = json.loads((folder / "result.json").read_text())
    record = {
        "path": run.path,
        "seed": run.seed,
        "test_err": result.pop("test_err"),
        "wall_s": round(wall_s, 1),
        "steps": result.pop("steps"),
        "target_steps": args.steps,
        "device": args.device,
        "threads": args.threads,
        **result,
    }
    if record["steps"] != args.steps:
        say(f"FAILED {run.name}: it trained {record['steps']} steps, not {args.steps}; see {log_file}")
        return False
    target = run_json(args.out, run)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    temporary.replace(target)
    say(f"done {run.name}: test error {record['test_err']:.2f} % in {wall_s / 60:.1f} min")
    return True


def planned_runs(paths: Sequence[str], seeds: Sequence[int]) -> list[Run]:
    """Seed by seed, every path in turn: both paths run side by side under the same load."""
    return [Run(path, seed) for seed in seeds for path in paths]


def run_study(args: argparse.Namespace, seeds: list[int]) -> bool:
    runs = planned_runs(args.paths, seeds)
    todo = []
    for run in runs:
        existing = run_json(args.out, run)
        if existing.is_file():
            record = json.loads(existing.read_text())
            if record.get("target_steps", record.get("steps")) != args.steps:
                raise SystemExit(
                    f"{existing} holds a run of {record.get('steps')} steps, not {args.steps}; "
                    "use another --out for another schedule"
                )
            say(f"skip {run.name}: finished already ({existing})")
        else:
            todo.append(run)
    low, high = milestones(args.steps)
    say(
        f"{len(todo)} of {len(runs)} runs to do: ResNet-{DEPTH}, {args.steps} steps (lr /10 at {low} and {high}), "
        f"seeds {seeds}, paths {' '.join(args.paths)}, device {args.device}, threads {args.threads or 'default'}, "
        f"{args.jobs} at a time; project code from {project_package()}"
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda run: execute(args, run), todo))
    return all(results)


# ---------------------------------------------------------------------------------------------
# Statistics and the table


def _t_cdf(x: float, df: float) -> float:
    """Student's t distribution function, by Simpson's rule on the density (for x >= 0)."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(u: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(u * u / df))

    n = 2000
    h = x / n
    total = density(0) + density(x) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
    return 0.5 + total * h / 3


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom."""
    try:
        from scipy.stats import t
    except ImportError:
        low, high = 0.0, 1.0
        while _t_cdf(high, df) < p:
            high *= 2
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
        return (low + high) / 2
    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Difference:
    estimate: float
    low: float | None
    high: float | None
    df: float | None


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """mean(a) - mean(b) with its Welch confidence interval (None where it cannot be estimated)."""
    estimate = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(estimate, None, None, None)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return Difference(estimate, estimate, estimate, math.inf)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(0.5 + confidence / 2, df) * math.sqrt(va + vb)
    return Difference(estimate, estimate - half, estimate + half, df)


def mean_std(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{statistics.fmean(values):.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def load_records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def report(out: Path, paths: Sequence[str]) -> str:
    records = load_records(out)
    if not records:
        return f"no finished runs under {out / 'runs'}"
    lines = []
    for steps in sorted({r.get("target_steps", r["steps"]) for r in records}):
        low, high = milestones(steps)
        devices = sorted({r.get("device", "?") for r in records})
        lines.append(
            f"ResNet-{DEPTH}, {steps} steps (lr 0.1, /10 at {low} and {high}), batch {BATCH_SIZE}, "
            f"on {', '.join(devices)}: top-1 test error (%), final weights"
        )
        errors: dict[str, list[float]] = {}
        lines.append(f"{'path':<10} {'n':>2}  {'mean ± std':<14} {'wall min':>8}  errors by seed")
        for path in paths:
            rows = sorted(
                (r for r in records if r["path"] == path and r.get("target_steps", r["steps"]) == steps),
                key=lambda r: r["seed"],
            )
            if not rows:
                lines.append(f"{path:<10} {0:>2}  (no finished runs)")
                continue
            errors[path] = [r["test_err"] for r in rows]
            wall = statistics.fmean(r["wall_s"] for r in rows) / 60
            by_seed = "  ".join(f"{r['seed']}: {r['test_err']:.2f}" for r in rows)
            lines.append(f"{path:<10} {len(rows):>2}  {mean_std(errors[path]):<14} {wall:>8.1f}  {by_seed}")
        if len(paths) == 2 and all(p in errors for p in paths):
            first, second = paths
            d = welch_difference(errors[first], errors[second])
            text = f"difference of the means ({first} - {second}): {d.estimate:+.2f} points"
            if d.low is None:
                text += "; its interval needs at least 2 seeds per path"
            else:
                verdict = "includes zero" if d.low <= 0 <= d.high else "EXCLUDES zero"
                text += (
                    f", 95 % CI [{d.low:+.2f}, {d.high:+.2f}] (Welch, df {d.df:.1f}): {verdict}; "
                    f"width {d.high - d.low:.2f} points"
                )
            lines.append(text)
        lines.append("")
    return "\n".join(lines).rstrip()


# ---------------------------------------------------------------------------------------------


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
