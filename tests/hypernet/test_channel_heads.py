"""Channel heads (HyperNetConfig.channel_heads): several heads per generated tensor, each owning a
band of its output channels by channel ratio, so a band is the same at every width."""

from __future__ import annotations

import pytest
import torch

from service.archs import FULL_WIDTH
from service.errors import InvalidParameter
from service.hypernet import generate, load_checkpoint, scatter
from service.hypernet.coords import coord_table
from service.hypernet.model import HyperNet, HyperNetConfig, head_count
from service.training.hypernet_inputs import TrainConfig
from tests.factories import tiny_checkpoint


def config(channel_heads: int = 1, band_limit: float = 0.0) -> HyperNetConfig:
    return HyperNetConfig(hidden=8, layers=1, num_freqs=3, heads=head_count("all", True, channel_heads),
                          head_per_block=True, channel_heads=channel_heads, band_limit=band_limit, noise=0.0)


def table(width: int):
    return coord_table("all", width, 1, 10, 64.0, 0.0, "cpu")


def randomised(inr: HyperNet, seed: int = 0) -> HyperNet:
    """Every parameter drawn fresh, the zero-initialised ones included, so every head matters."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in inr.parameters():
            p.normal_(0, 0.3)
    return inr


@pytest.mark.parametrize("bands", [1, 2, 3, 4])
@pytest.mark.parametrize("width", [8, 13, FULL_WIDTH])
def test_each_band_holds_the_rows_whose_output_channel_ratio_lies_in_it(bands, width):
    t = table(width)
    offsets = t.band_offsets(bands)
    assert len(offsets) == len(t.slots) * bands + 1 and offsets[-1] == t.rows
    assert list(offsets) == sorted(offsets)
    if bands == 1:  # a head per tensor
        assert offsets == t.slot_offsets
    for s, slot in enumerate(t.slots):
        assert offsets[s * bands] == slot.start and offsets[(s + 1) * bands] == slot.stop
        for g in range(bands):
            ratios = t.coords[offsets[s * bands + g] : offsets[s * bands + g + 1], 1]  # feature 1: out ratio
            assert torch.all(ratios >= g / bands) and torch.all(ratios < (g + 1) / bands)


def test_a_band_narrower_than_a_channel_is_an_empty_head():
    t = table(8)  # layer1 blocks: 2 inner channels, at ratios 0.25 and 0.75
    slot = next(s for s in t.slots if s.name == "layer1.0.conv1.weight")
    s = t.slots.index(slot)
    offsets = t.band_offsets(4)[s * 4 : s * 4 + 5]
    rows = slot.shape[1]  # rows per output channel
    assert list(offsets) == [slot.start, slot.start, slot.start + rows, slot.start + rows, slot.stop]


@pytest.mark.parametrize("width", [8, 23, FULL_WIDTH])
@pytest.mark.parametrize("band_limit", [0.0, 0.29])
def test_splitting_keeps_every_generated_weight(width, band_limit):
    plain = randomised(HyperNet(config(band_limit=band_limit)))
    split = plain.split_channels(3)
    assert split.config.heads == 3 * plain.config.heads and split.config.channel_heads == 3
    with torch.no_grad():
        assert torch.allclose(split(table(width)), plain(table(width)), atol=1e-6)


def test_after_splitting_the_bands_part_and_each_learns_only_from_its_own_channels():
    inr = randomised(HyperNet(config())).split_channels(2)
    t = table(FULL_WIDTH)
    name = "layer2.1.conv1.weight"  # 32 output channels: band 0 holds channels 0-15
    s = next(i for i, slot in enumerate(t.slots) if slot.name == name)
    scatter(t, inr(t))[name][:16].sum().backward()
    touched = {h for h in range(inr.config.heads) if torch.any(inr.w_out.grad[h])}
    assert touched == {2 * s}
    with torch.no_grad():
        inr.w_out[2 * s] += 0.5  # moving band 0's head changes only its channels
        after = scatter(t, inr(t))[name]
    before = scatter(t, randomised(HyperNet(config())).split_channels(2)(t).detach())[name]
    assert not torch.allclose(after[:16], before[:16]) and torch.allclose(after[16:], before[16:], atol=1e-6)


def test_they_need_a_head_per_tensor_and_no_embeddings():
    with pytest.raises(ValueError, match="channel_heads"):
        HyperNetConfig(channel_heads=2)
    with pytest.raises(ValueError, match="channel_heads"):
        HyperNetConfig(heads=72, head_per_block=True, channel_heads=2, channel_embeddings=True)
    with pytest.raises(InvalidParameter, match="channel_heads"):
        TrainConfig(base="b", out="o", scope="all", channel_heads=2, head_per_block=False)
    with pytest.raises(ValueError, match="splits by channel"):
        HyperNet(config(2)).split_channels(2)


def test_a_checkpoint_keeps_them_and_generation_uses_every_band(tmp_path):
    path = tiny_checkpoint(tmp_path / "bands.safetensors", inr=config(2))
    ckpt = load_checkpoint(path)
    assert ckpt.manifest.inr.channel_heads == 2 and ckpt.manifest.inr.heads == head_count("all", True, 2)
    randomised(ckpt.hypernet)
    served = generate(ckpt, 12, backend="torch")
    with torch.no_grad():
        direct = scatter(table(12), ckpt.hypernet(table(12)))
    assert all(torch.allclose(served[k], direct[k], atol=1e-6) for k in direct)


def test_a_manifest_whose_head_count_disagrees_is_refused(tmp_path):
    bad = config(2).model_copy(update={"heads": head_count("all", True)})  # the per-tensor count
    with pytest.raises(ValueError, match="channel_heads=2"):
        tiny_checkpoint(tmp_path / "bad.safetensors", inr=bad)
