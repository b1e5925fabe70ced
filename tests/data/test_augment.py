import torch
import torchvision.transforms.functional as TF

from resnet_cifar.data.augment import CropFlip, apply_crop_flip, draw_crop_flip

# Chi-square critical value, 8 degrees of freedom (9 offsets), p = 0.001.
CHI2_8DF_P001 = 26.12


def reference_crop_flip(image: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """torchvision's per-image ops, as RandomCrop(32, padding) + RandomHorizontalFlip apply them."""
    out = TF.crop(TF.pad(image, [padding]), top, left, image.shape[-2], image.shape[-1])
    return TF.hflip(out) if flip else out


def test_batched_crop_flip_equals_torchvision_per_image():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    params = draw_crop_flip(64, padding=4, generator=generator)
    out = apply_crop_flip(images, params, padding=4)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for i in range(64):
        expected = reference_crop_flip(images[i], int(params.top[i]), int(params.left[i]), bool(params.flip[i]), 4)
        assert torch.equal(out[i], expected), i


def test_identity_leaves_images_unchanged_and_pads_zeros():
    images = torch.randint(1, 256, (2, 3, 32, 32), dtype=torch.uint8)
    centre = CropFlip(torch.tensor([4, 0]), torch.tensor([4, 0]), torch.tensor([False, False]))
    out = apply_crop_flip(images, centre, padding=4)
    assert torch.equal(out[0], images[0])
    # Offset (0, 0): the top 4 rows and left 4 columns come from the zero padding.
    assert torch.count_nonzero(out[1, :, :4, :]) == 0 and torch.count_nonzero(out[1, :, :, :4]) == 0
    assert torch.equal(out[1, :, 4:, 4:], images[1, :, :28, :28])


def chi_square_uniform(values: torch.Tensor, num_bins: int) -> float:
    counts = torch.bincount(values, minlength=num_bins).double()
    expected = len(values) / num_bins
    return float(((counts - expected) ** 2 / expected).sum())


def test_offsets_and_flips_follow_the_classic_distribution():
    """RandomCrop(32, padding=4) draws each offset uniformly from 0..8; the flip is a fair coin."""
    count = 90_000
    params = draw_crop_flip(count, padding=4, generator=torch.Generator().manual_seed(1))
    assert params.top.min() == 0 and params.top.max() == 8
    assert chi_square_uniform(params.top, 9) < CHI2_8DF_P001
    assert chi_square_uniform(params.left, 9) < CHI2_8DF_P001
    # Offsets are independent: all 81 (top, left) pairs appear about equally often.
    assert chi_square_uniform(params.top * 9 + params.left, 81) < 124.8  # 80 df, p = 0.001
    flips = params.flip.double().mean().item()
    assert abs(flips - 0.5) < 3.3 * (0.25 / count) ** 0.5
    # The check can fail: the same offsets with a tenth as many zeros again do not pass it.
    skewed = torch.cat([params.top, torch.zeros(count // 10, dtype=torch.long)])
    assert chi_square_uniform(skewed, 9) > CHI2_8DF_P001
