"""Growing the INR (HyperNet.widened: more hidden units; split_per_block: a head per generated tensor)
keeps every generated weight and leaves the new capacity trainable."""

import pytest
import torch

from service.hypernet.coords import coord_table
from service.hypernet.model import HyperNet, HyperNetConfig


def table(width: int):
    return coord_table("all", width, 1, 10, 64.0, 1.0, "cpu")


@pytest.fixture
def small() -> HyperNet:
    torch.manual_seed(3)
    return HyperNet(HyperNetConfig(hidden=8, layers=2, num_freqs=3))


@pytest.mark.parametrize("width", [8, 37])
def test_a_widened_inr_generates_the_same_weights(small, width):
    grown = small.widened(24)
    assert grown.config.hidden == 24 and grown.w_hidden.shape[-2:] == (24, 24)
    t = table(width)
    for samples in (1, 3):  # the clean sample and noisy ones
        assert torch.allclose(grown(t, samples=samples, seed=5), small(t, samples=samples, seed=5), atol=1e-6)


def test_the_new_units_are_live_and_learn(small):
    grown = small.widened(24)
    assert grown.w_in[:, :, 8:].abs().sum() > 0  # fresh input weights, not a dead copy
    grown(table(16)).square().sum().backward()
    # The zeroed paths out of the new units get gradient, so the extra capacity is used once training starts.
    assert grown.w_out.grad[:, 8:].abs().sum() > 0
    assert grown.w_hidden.grad[:, :, 8:, :8].abs().sum() > 0


def test_widening_is_deterministic_and_leaves_the_callers_rng_alone(small):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    a, b = small.widened(16, seed=1), small.widened(16, seed=1)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.w_in, small.widened(16, seed=2).w_in)


def test_same_width_is_a_copy_and_narrower_is_refused(small):
    same = small.widened(8)
    assert all(torch.equal(x, y) for x, y in zip(same.parameters(), small.parameters(), strict=True))
    with pytest.raises(ValueError, match="cannot widen"):
        small.widened(4)


def test_splitting_heads_per_block_keeps_every_generated_weight(small):
    split = small.split_per_block(9)
    assert split.config.heads == 36 and split.config.head_per_block and split.w_in.shape[0] == 36
    for width in (8, 37):
        t = table(width)
        assert len(split.head_offsets(t)) == 37  # one head per generated tensor of the nine blocks
        for samples in (1, 3):
            assert torch.allclose(split(t, samples=samples, seed=5), small(t, samples=samples, seed=5), atol=1e-6)


def test_each_blocks_head_learns_only_from_its_own_tensor(small):
    split = small.split_per_block(9)
    t = table(16)
    slot = next(s for s in t.slots if s.name == "layer2.1.conv2.weight")
    split(t)[slot.start:slot.stop].square().sum().backward()
    touched = [h for h in range(36) if split.w_out.grad[h].abs().sum() > 0]
    # conv2.weight is role 2; layer2.1 is block 4 of 9, so head 2 * 9 + 4.
    assert touched == [2 * 9 + 4] and split.role_heads("conv2.weight") == list(range(18, 27))
    assert small.role_heads("conv2.weight") == [2]


def test_a_per_block_inr_is_not_split_again(small):
    with pytest.raises(ValueError, match="already has a head per block"):
        small.split_per_block(9).split_per_block(9)
