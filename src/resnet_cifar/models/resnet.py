"""CIFAR ResNets and plain nets of He et al. (2016), Section 4.2.

A 3x3 conv with 16 filters, three stages of ``n`` blocks on 32x32, 16x16 and 8x8 maps with
16, 32 and 64 filters, global average pooling and a 10-way linear layer: 6n+2 weighted layers.
"""

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.errors import ConfigError

SHORTCUTS = ("A", "B")
STAGE_WIDTHS = (16, 32, 64)


def valid_depths(up_to: int = 1202) -> list[int]:
    """The depths 6n+2 (n >= 1) up to ``up_to``."""
    return list(range(8, up_to + 1, 6))


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: batch norm follows every convolution.
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity that subsamples by ``stride`` and pads new channels with zeros."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # Pad (W left/right, H top/bottom, C front/back) with zeros: the new channels carry nothing.
        half = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Option B: a strided 1x1 convolution with batch norm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut when ``residual``, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str, residual: bool) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.residual = residual
        changes_shape = stride != 1 or in_channels != out_channels
        if not residual or not changes_shape:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = projection_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, shortcut: str, residual: bool, num_classes: int) -> None:
        super().__init__()
        self.conv = conv3x3(3, STAGE_WIDTHS[0])
        self.bn = nn.BatchNorm2d(STAGE_WIDTHS[0])
        stages = []
        in_channels = STAGE_WIDTHS[0]
        for stage, width in enumerate(STAGE_WIDTHS):
            blocks = []
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, shortcut, residual))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He et al. (2015) init, fan_in mode as in the paper's reference [13]; BN as identity."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="linear")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = self.stages(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def cifar_resnet(depth: int = 20, shortcut: str = "A", residual: bool = True, num_classes: int = 10) -> nn.Module:
    """The paper's CIFAR network of ``depth`` = 6n+2 layers.

    ``shortcut`` "A" pads with zeros where the shape changes (no parameters), "B" projects with a
    1x1 convolution there; ``residual=False`` gives the plain net of the same depth.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ConfigError(
            f"depth={depth!r} is not of the form 6n+2; use one of 20, 32, 44, 56, 110, 1202 (or any 6n+2 >= 8)"
        )
    if shortcut not in SHORTCUTS:
        raise ConfigError(f"shortcut={shortcut!r} is not known; use one of {', '.join(SHORTCUTS)}")
    if num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} must be a positive integer")
    return CifarResNet((depth - 2) // 6, shortcut, residual, num_classes)
