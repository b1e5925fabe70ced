"""The paper's augmentation, drawn per image and applied to whole batches as tensor ops.

Pad 4 pixels with zeros, take a random 32x32 crop, flip horizontally with probability 1/2:
the same distribution as torchvision's ``RandomCrop(32, padding=4)`` and
``RandomHorizontalFlip()``, without one Python call per image.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F


class CropFlip(NamedTuple):
    """Per-image augmentation parameters: crop offsets into the padded image, and flips."""

    top: torch.Tensor  # int64, N, in [0, 2 * padding]
    left: torch.Tensor  # int64, N, in [0, 2 * padding]
    flip: torch.Tensor  # bool, N


def draw_crop_flip(count: int, padding: int, generator: torch.Generator) -> CropFlip:
    """Draw crop offsets uniformly in [0, 2*padding] and fair coin flips, as torchvision does."""
    top = torch.randint(0, 2 * padding + 1, (count,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (count,), generator=generator)
    flip = torch.rand(count, generator=generator) < 0.5
    return CropFlip(top, left, flip)


def apply_crop_flip(images: torch.Tensor, params: CropFlip, padding: int) -> torch.Tensor:
    """Crop (and flip) every image of an N x C x H x W batch with its own parameters.

    One gather on the zero-padded batch: row and column indices per image, the column order
    reversed for flipped images.
    """
    count, channels, height, width = images.shape
    device = images.device
    top, left, flip = (t.to(device, non_blocking=True) for t in params)
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(height, device=device)  # N x H
    columns = torch.arange(width, device=device).expand(count, width)
    columns = torch.where(flip[:, None], columns.flip(1), columns) + left[:, None]  # N x W
    batch_index = torch.arange(count, device=device)[:, None, None, None]
    channel_index = torch.arange(channels, device=device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], columns[:, None, None, :]]
