"""The reference path of bench/fidelity.py: the paper's recipe written the plain way, one run.

It shares nothing with the project except the network definition
(``resnet_cifar.models.cifar_resnet``): a torchvision-CIFAR10-style Dataset of PIL images decoded
from the image folder, its own seeded train/val split, ``RandomCrop(32, padding=4)`` +
``RandomHorizontalFlip`` + ``ToTensor`` + subtraction of the training split's mean image, a
``DataLoader`` (shuffle, the epoch's short last batch kept), ``torch.optim.SGD`` + ``MultiStepLR``
stepped every iteration, a for-loop until the last step, and the test on the final weights.
``bench/fidelity.py --run-reference SEED`` runs it in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fidelity_recipe import (
    BATCH_SIZE,
    DEPTH,
    EVAL_BATCH_SIZE,
    GAMMA,
    LR,
    MOMENTUM,
    PADDING,
    SPLIT_SEED,
    VAL_SIZE,
    WEIGHT_DECAY,
    milestones,
    utc_now,
)


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
