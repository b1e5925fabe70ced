from types import SimpleNamespace

import pytest
import torch

from resnet_cifar.training.callbacks import LrWarmupUntilTrainError


class FakeModule:
    def __init__(self):
        self.logged = {}

    def log(self, name, value, **kwargs):
        self.logged[name] = value


def fake_trainer(lr=0.1):
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=lr)
    strategy = SimpleNamespace(reduce=lambda tensor, reduce_op: tensor)
    return SimpleNamespace(optimizers=[optimizer], strategy=strategy, global_step=0)


def lr_of(trainer):
    return trainer.optimizers[0].param_groups[0]["lr"]


def test_warmup_trains_at_a_tenth_until_train_error_below_80():
    trainer, module = fake_trainer(), FakeModule()
    warmup = LrWarmupUntilTrainError(factor=0.1, max_train_err=80.0, window=3)
    warmup.on_train_start(trainer, module)
    assert lr_of(trainer) == pytest.approx(0.01)
    for step, error in enumerate([95.0, 85.0, 82.0, 79.0, 78.0], start=1):
        trainer.global_step = step
        warmup.on_train_batch_end(trainer, module, {"err": torch.tensor(error)}, None, step)
        # Mean of the last 3 steps: 87.3, 82.0, then 79.7 at step 5.
        assert lr_of(trainer) == pytest.approx(0.1 if step == 5 else 0.01), step
    assert warmup.state == "done" and module.logged["warmup_end_step"] == 5.0
    warmup.on_train_batch_end(trainer, module, {"err": torch.tensor(99.0)}, None, 6)
    assert lr_of(trainer) == pytest.approx(0.1)


def test_warmup_state_survives_a_resume():
    warmup = LrWarmupUntilTrainError()
    warmup.on_train_start(fake_trainer(), FakeModule())
    restored = LrWarmupUntilTrainError()
    restored.load_state_dict(warmup.state_dict())
    # The optimizer state in the checkpoint carries the lowered lr already: not lowered again.
    trainer = fake_trainer(lr=0.01)
    restored.on_train_start(trainer, FakeModule())
    assert lr_of(trainer) == pytest.approx(0.01) and restored.state == "warming"


def test_input_grid_shows_each_image_under_its_class_name():
    from resnet_cifar.training.input_preview import LABEL_HEIGHT, image_grid

    images = torch.zeros(3, 3, 8, 8)
    images[0, 0], images[1, 2], images[2, 1] = 1, 1, 1  # red, blue, green
    grid = image_grid(images, [2, 0, 7], ("cat", "dog", "frog"), scale=2)
    # 3 images: 2 columns x 2 rows of (16 + 4) x (16 + LABEL_HEIGHT) pixel cells.
    assert grid.shape == (2 * (16 + LABEL_HEIGHT), 2 * 20, 3) and grid.dtype.name == "uint8"
    tiles = [
        grid[row * (16 + LABEL_HEIGHT) + LABEL_HEIGHT :][:16, col * 20 + 2 :][:, :16]
        for row, col in ((0, 0), (0, 1), (1, 0))
    ]
    assert [
        tile.reshape(-1, 3).tolist().count(color) for tile, color in zip(tiles, ([255, 0, 0], [0, 0, 255], [0, 255, 0]))
    ] == [256] * 3
    labels = [
        grid[row * (16 + LABEL_HEIGHT) :][:LABEL_HEIGHT, col * 20 :][:, :20]
        for row, col in ((0, 0), (0, 1), (1, 0), (1, 1))
    ]
    assert [bool((label < 128).any()) for label in labels] == [True, True, True, False]  # text, but no 4th image


def test_training_clock_runs_from_train_start():
    """A run resumed mid-epoch gets no on_train_epoch_start; its training time still counts."""
    from resnet_cifar.training.callbacks import TrainingClock

    clock, trainer = TrainingClock(), SimpleNamespace(world_size=1)
    module = SimpleNamespace(device=torch.device("cpu"))
    clock.load_state_dict(
        {"started_at": "2026-01-01T00:00:00+00:00", "images": 640, "train_seconds": 2.0, "fit_seconds": 3.0}
    )
    clock.on_fit_start(trainer, module)
    clock.on_train_start(trainer, module)
    for size in (32, 32, 32, 16):
        batch = (torch.zeros(size, 3, 2, 2), torch.zeros(size))
        clock.on_train_batch_start(trainer, module, batch, 0)
        clock.on_train_batch_end(trainer, module, {}, batch, 0)
    state = clock.state_dict()  # mid-training, as a periodic checkpoint sees it
    clock.on_train_end(trainer, module)
    clock.on_fit_end(trainer, module)
    assert state["images"] == clock.images == 640 + 3 * 32 + 16
    assert 2.0 < state["train_seconds"] <= clock.train_seconds and 3.0 < clock.fit_seconds
    assert clock.started_at == "2026-01-01T00:00:00+00:00"
    # The first step of each batch shape (32 and 16) is timed apart: the steady rate leaves it out.
    assert state["compile_images"] == clock.compile_images == 32 + 16
    assert 0 < clock.compile_seconds < clock.train_seconds - 2.0
    steady_images = clock.images - clock.compile_images
    assert clock.images_per_second == steady_images / (clock.train_seconds - clock.compile_seconds)


def test_clock_counts_a_compile_step_a_checkpoint_interrupts():
    from resnet_cifar.training.callbacks import TrainingClock

    clock, trainer = TrainingClock(), SimpleNamespace(world_size=2)
    module = SimpleNamespace(device=torch.device("cpu"))
    clock.on_fit_start(trainer, module)
    clock.on_train_start(trainer, module)
    clock.on_train_batch_start(trainer, module, (torch.zeros(8, 3, 2, 2), torch.zeros(8)), 0)
    state = clock.state_dict()  # a checkpoint written at the end of the first step
    assert (
        state["compile_images"] == state["images"] == 2 * 8 and 0 < state["compile_seconds"] <= state["train_seconds"]
    )
    assert clock.images_per_second is None  # no steady step yet
