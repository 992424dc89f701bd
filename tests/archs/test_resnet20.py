"""BatchNorm folding: the folded, BN-free network computes the eval-mode function of the original."""

import pytest
import torch
from torch import nn

from service.archs import ResNet20, fold_batchnorm, folded_model
from service.archs.resnet20 import NUM_BLOCKS, full_inner_widths


def _randomize_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    # Fresh BN layers are the identity in eval mode; random statistics make folding do real work.
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        n = bn.num_features
        bn.weight.data = torch.rand(n, generator=gen) + 0.5
        bn.bias.data = torch.randn(n, generator=gen) * 0.2
        bn.running_mean = torch.randn(n, generator=gen) * 0.2
        bn.running_var = torch.rand(n, generator=gen) + 0.5


PER_BLOCK_WIDTHS = [
    full_inner_widths(),
    [1] * NUM_BLOCKS,
    [3, 16, 7, 5, 32, 11, 64, 1, 17],
]


@pytest.mark.parametrize("inner", PER_BLOCK_WIDTHS, ids=["full", "ones", "mixed"])
@pytest.mark.parametrize("in_channels,num_classes,size", [(1, 10, 28), (3, 7, 16)])
def test_folded_equals_eval_mode_unfolded(inner, in_channels, num_classes, size):
    gen = torch.Generator().manual_seed(sum(inner) + in_channels)
    model = ResNet20(in_channels, num_classes, inner, batchnorm=True)
    _randomize_batchnorm(model, gen)
    model.eval()
    state = fold_batchnorm(model)

    folded = folded_model(state, in_channels, num_classes)
    x = torch.randn(3, in_channels, size, size, generator=gen)
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded.inner_widths == tuple(inner)
    assert (got - expected).abs().max().item() < 1e-5
    # Folding must matter: the BN net differs from the same convs without BN.
    plain = ResNet20(in_channels, num_classes, inner, batchnorm=False).eval()
    assert (plain(x) - expected).abs().max().item() > 1e-3


def test_folded_state_is_float32_contiguous_with_biases():
    state = fold_batchnorm(ResNet20(1, 10).eval())
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in state.values())
    conv_weights = [k for k in state if k.endswith(".weight") and k != "fc.weight"]
    assert all(k.replace(".weight", ".bias") in state for k in conv_weights)
    assert {"layer2.0.shortcut.weight", "layer3.0.shortcut.weight"} <= set(state)
    assert "layer1.0.shortcut.weight" not in state  # identity shortcut in stage 1


def test_rejects_bad_inner_widths():
    with pytest.raises(ValueError, match="inner_widths"):
        ResNet20(1, 10, [16] * 8)
    with pytest.raises(ValueError, match="inner_widths"):
        ResNet20(1, 10, [0] + [16] * 8)
