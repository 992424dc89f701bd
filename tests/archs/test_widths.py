"""Width -> per-block inner widths per morph scope, parameter counts and compression ratio."""

import itertools

import pytest

from service.archs import (
    ResNet20,
    Scope,
    compression_ratio,
    fold_batchnorm,
    inner_widths,
    morphed_blocks,
    param_count,
    tensor_specs,
)

FULL = [16, 16, 16, 32, 32, 32, 64, 64, 64]


def test_last_scope_morphs_only_the_final_block():
    assert morphed_blocks("last") == [8]
    assert inner_widths("last", 20) == FULL[:8] + [20]
    assert inner_widths(Scope.LAST, 64) == FULL


def test_all_scope_scales_each_stage():
    assert morphed_blocks("all") == list(range(9))
    assert inner_widths("all", 64) == FULL
    assert inner_widths("all", 32) == [8] * 3 + [16] * 3 + [32] * 3
    assert inner_widths("all", 48) == [12] * 3 + [24] * 3 + [48] * 3
    # round(16 * 1 / 64) = 0 is clamped to 1: every block keeps at least one channel.
    assert inner_widths("all", 1) == [1] * 6 + [1] * 3
    # Python's round() is round-half-even: 32 * 17 / 64 = 8.5 -> 8.
    assert inner_widths("all", 17) == [4] * 3 + [8] * 3 + [17] * 3


def test_width_below_one_is_rejected():
    with pytest.raises(ValueError):
        inner_widths("all", 0)


@pytest.mark.parametrize("scope", ["all", "last"])
@pytest.mark.parametrize("width", [1, 8, 17, 33, 64])
@pytest.mark.parametrize("in_channels,num_classes", [(1, 10), (3, 100)])
def test_param_count_matches_a_real_folded_module(scope, width, in_channels, num_classes):
    model = ResNet20(in_channels, num_classes, inner_widths(scope, width), batchnorm=True)
    folded = fold_batchnorm(model.eval())
    expected = sum(t.numel() for t in folded.values())
    assert param_count(scope, width, in_channels, num_classes) == expected
    # tensor_specs names and shapes the same tensors, in state_dict order.
    specs = tensor_specs(scope, width, in_channels, num_classes)
    assert [s.name for s in specs] == list(folded)
    assert all(tuple(folded[s.name].shape) == s.shape for s in specs)


def test_generated_roles_follow_scope():
    last = [s for s in tensor_specs("last", 20, 1, 10) if s.role]
    assert {s.name.rsplit(".", 2)[0] for s in last} == {"layer3.2"}
    assert len(last) == 4
    all_ = [s for s in tensor_specs("all", 20, 1, 10) if s.role]
    assert len(all_) == 36  # 9 blocks x (conv1, conv2) x (weight, bias)
    assert all(s.role is None for s in tensor_specs("all", 20, 1, 10) if "shortcut" in s.name)


def test_compression_ratio_is_over_the_whole_network():
    full = sum(p.numel() for p in ResNet20(1, 10, batchnorm=False).parameters())
    half = sum(p.numel() for p in ResNet20(1, 10, inner_widths("all", 32), batchnorm=False).parameters())
    assert compression_ratio("all", 32, 1, 10) == pytest.approx(1 - half / full)
    assert compression_ratio("all", 64, 1, 10) == 0.0
    # Scope `last` morphs one block, so it can never compress as much as `all`.
    assert 0 < compression_ratio("last", 16, 1, 10) < compression_ratio("all", 16, 1, 10) < 1
    ratios = [compression_ratio("all", w, 1, 10) for w in range(1, 65)]
    assert all(a >= b for a, b in itertools.pairwise(ratios))
