import pytest
import torch
from torch import nn

from resnet_cifar.models import cifar_resnet, valid_depths
from resnet_cifar.models.resnet import ZeroPadShortcut

# Exact parameter counts of the option-A ResNets; the paper's Table 6 gives them rounded.
TABLE_6 = {
    20: (269_722, "0.27M"),
    32: (464_154, "0.46M"),
    44: (658_586, "0.66M"),
    56: (853_018, "0.85M"),
    110: (1_727_962, "1.7M"),
    1202: (19_421_274, "19.4M"),
}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def paper_rounding(count: int) -> str:
    """Millions as Table 6 prints them: two decimals below 1M, one above."""
    millions = count / 1e6
    return f"{millions:.2f}M" if millions < 1 else f"{millions:.1f}M"


@pytest.mark.parametrize("depth", sorted(TABLE_6))
def test_parameter_counts_match_table_6(depth):
    exact, paper = TABLE_6[depth]
    count = count_parameters(cifar_resnet(depth))
    assert count == exact
    assert paper_rounding(count) == paper


@pytest.mark.parametrize("depth", [20, 56])
def test_plain_net_has_same_parameters_option_b_adds_two(depth):
    resnet_a = count_parameters(cifar_resnet(depth))
    assert count_parameters(cifar_resnet(depth, residual=False)) == resnet_a
    # Two 1x1 projections (16->32, 32->64) with batch norm, where the shape changes.
    projections = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert count_parameters(cifar_resnet(depth, shortcut="B")) == resnet_a + projections


def test_weighted_layers_number_6n_plus_2():
    net = cifar_resnet(32)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 32
    assert all(conv.bias is None for conv in convs)
    assert all(conv.kernel_size == (3, 3) for conv in convs)


def test_forward_gives_logits_and_downsamples_twice():
    net = cifar_resnet(20, num_classes=100).eval()
    shapes = []
    for stage in net.stages:
        stage.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape[1:])))
    logits = net(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 100)
    assert shapes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


def test_option_a_shortcut_subsamples_and_pads_with_zeros():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    y = shortcut(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0
    assert count_parameters(shortcut) == 0


def test_plain_net_differs_from_resnet_only_by_the_shortcuts():
    torch.manual_seed(0)
    resnet = cifar_resnet(20)
    plain = cifar_resnet(20, residual=False)
    plain.load_state_dict(resnet.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(resnet.eval()(x), plain.eval()(x))
    for block in plain.modules():
        if hasattr(block, "residual"):
            assert block.residual is False


def test_he_initialisation():
    torch.manual_seed(0)
    net = cifar_resnet(110)
    conv = net.stages[2][5].conv1  # 64 -> 64, 3x3: fan_in 576
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


@pytest.mark.parametrize("depth", [21, 0, 2, 7, 19, "20"])
def test_depth_not_6n_plus_2_is_refused_with_the_valid_values(depth):
    with pytest.raises(ValueError, match=r"6n\+2.*20, 32, 44, 56, 110, 1202"):
        cifar_resnet(depth)


def test_unknown_shortcut_is_refused_with_the_valid_values():
    with pytest.raises(ValueError, match="shortcut='C'.*A, B"):
        cifar_resnet(20, shortcut="C")


def test_valid_depths():
    assert valid_depths(56) == [8, 14, 20, 26, 32, 38, 44, 50, 56]
    assert {20, 32, 44, 56, 110, 1202} <= set(valid_depths())
