"""Channel embeddings (HyperNetConfig.channel_embeddings): a learned vector per full-width channel of
each generated tensor's axes, added to the INR's first layer, box-averaged to narrower widths."""

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


def config(embeddings: bool = True) -> HyperNetConfig:
    return HyperNetConfig(hidden=8, layers=1, num_freqs=3, heads=head_count("all", True), head_per_block=True,
                          channel_embeddings=embeddings, noise=0.0)


def table(width: int):
    return coord_table("all", width, 1, 10, 64.0, 0.0, "cpu")


def embedded(seed: int = 0) -> HyperNet:
    torch.manual_seed(seed)
    inr = HyperNet(config(embeddings=False)).with_channel_embeddings()
    with torch.no_grad():
        inr.embed.normal_()
    return inr


@pytest.mark.parametrize("width", [8, 23, FULL_WIDTH])
def test_adding_them_keeps_every_generated_weight(width):
    torch.manual_seed(0)
    plain = HyperNet(config(embeddings=False))
    grown = plain.with_channel_embeddings()
    assert grown.config.channel_embeddings and not torch.any(grown.embed)
    with torch.no_grad():
        assert torch.equal(grown(table(width)), plain(table(width)))


def test_at_full_width_each_row_gets_its_own_output_and_input_channel_vectors():
    inr = embedded()
    t = table(FULL_WIDTH)
    with torch.no_grad():
        bias = inr.row_bias(t)
    assert bias.shape == (t.rows, inr.config.hidden)
    for head, slot in enumerate(t.slots):
        if len(slot.shape) == 1:  # a bias: its output channels only
            assert torch.equal(bias[slot.start : slot.stop], inr.embed[head, 0, : slot.shape[0]].detach())
            continue
        s1 = slot.shape[1]
        for a, b in ((0, 0), (slot.shape[0] - 1, 1), (3, s1 - 1)):
            want = inr.embed[head, 0, a] + inr.embed[head, 1, b]
            assert torch.allclose(bias[slot.start + a * s1 + b], want.detach())


def test_a_narrow_channel_takes_the_mean_of_the_full_width_channels_it_covers():
    inr = embedded()
    t = table(32)  # stage-3 inner channels: 32 of 64, so each averages two
    slot, head = next((s, h) for h, s in enumerate(t.slots) if s.name == "layer3.2.conv1.weight")
    assert slot.shape[0] * 2 == slot.full_shape[0] and slot.shape[1] == slot.full_shape[1]
    with torch.no_grad():
        bias = inr.row_bias(t)
    a, b, s1 = 5, 7, slot.shape[1]
    want = inr.embed[head, 0, 2 * a : 2 * a + 2].mean(0) + inr.embed[head, 1, b]
    assert torch.allclose(bias[slot.start + a * s1 + b], want.detach(), atol=1e-6)


def test_they_change_the_generated_weights_and_learn_only_from_their_own_tensor():
    inr = embedded()
    inr.zero_grad()
    t = table(16)
    name = "layer2.1.conv2.weight"
    slot = next(s for s in t.slots if s.name == name)
    scatter(t, inr(t))[name].sum().backward()
    grad = inr.embed.grad
    assert grad is not None
    touched = {h for h in range(grad.shape[0]) if torch.any(grad[h])}
    assert touched == {t.slots.index(slot)}


def test_they_need_a_head_per_tensor():
    with pytest.raises(ValueError, match="head_per_block"):
        HyperNetConfig(channel_embeddings=True)
    with pytest.raises(InvalidParameter, match="head_per_block"):
        TrainConfig(base="b", out="o", scope="all", channel_embeddings=True, head_per_block=False)


def test_widening_keeps_them_and_the_function():
    inr = embedded()
    wider = inr.widened(12)
    with torch.no_grad():
        assert torch.allclose(wider(table(16)), inr(table(16)), atol=1e-6)


def test_a_checkpoint_keeps_them_and_generation_applies_them(tmp_path):
    path = tiny_checkpoint(tmp_path / "ce.safetensors", inr=config())
    ckpt = load_checkpoint(path)
    assert ckpt.manifest.inr.channel_embeddings
    plain = generate(ckpt, 12, backend="torch")
    with torch.no_grad():
        ckpt.hypernet.embed.normal_()
    moved = generate(ckpt, 12, backend="torch")
    with torch.no_grad():
        direct = scatter(table(12), ckpt.hypernet(table(12)))
    assert all(torch.allclose(moved[k], direct[k], atol=1e-6) for k in direct)
    assert not all(torch.allclose(moved[k], plain[k], atol=1e-6) for k in direct)


def test_served_widths_reuse_their_row_bias_until_the_inr_changes():
    inr = embedded()
    with torch.no_grad():
        first, again, other = inr.row_bias(table(16)), inr.row_bias(table(16)), inr.row_bias(table(8))
        assert again is first and other is not first
        inr.embed.mul_(2.0)
        assert torch.allclose(inr.row_bias(table(16)), 2.0 * first)
    fresh = inr.row_bias(table(16))
    assert fresh.requires_grad and fresh.grad_fn is not None
