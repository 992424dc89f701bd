"""Band limiting (HyperNetConfig.band_limit): channel-ratio frequencies damped where a width cannot
sample them, exactly nothing at full width, folded into each head's input weights."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from service.archs import FULL_WIDTH
from service.errors import InvalidParameter
from service.hypernet import generate, load_checkpoint, scatter
from service.hypernet.coords import COORD_DIM, coord_table
from service.hypernet.model import HyperNet, HyperNetConfig, band_limit_gains, head_count
from service.training.hypernet_inputs import TrainConfig
from tests.factories import tiny_checkpoint

BOX = 1 / math.sqrt(12)  # the standard deviation of a box one channel wide


def config(band_limit: float = BOX, num_freqs: int = 4) -> HyperNetConfig:
    return HyperNetConfig(hidden=8, layers=1, num_freqs=num_freqs, heads=head_count("all", True),
                          head_per_block=True, band_limit=band_limit)


def table(width: int):
    return coord_table("all", width, 1, 10, 64.0, 0.0, "cpu")


def gain_of(gains: torch.Tensor, head: int, freq: int, feature: int) -> tuple[float, float]:
    """(sin, cos) gains of one head's (frequency, coordinate feature), in reference.encode's order."""
    first = COORD_DIM + (freq * COORD_DIM + feature) * 2
    return float(gains[head, first]), float(gains[head, first + 1])


def test_full_width_is_untouched_and_off_means_ones():
    assert torch.equal(band_limit_gains(table(FULL_WIDTH), config()), torch.ones(36, config().encoded_dim))
    assert torch.equal(band_limit_gains(table(8), config(band_limit=0.0)), torch.ones(36, config().encoded_dim))


def test_a_narrow_axis_loses_its_high_frequencies_and_a_fixed_axis_keeps_them():
    t, c = table(16), config()
    gains = band_limit_gains(t, c)
    head = next(i for i, s in enumerate(t.slots) if s.name == "layer3.1.conv1.weight")  # (16, 64, 3, 3)
    size, full = t.slots[head].shape[0], t.slots[head].full_shape[0]
    assert (size, full) == (16, 64)
    out_axis = [gain_of(gains, head, f, 1) for f in range(c.num_freqs)]
    for f, (g_sin, g_cos) in enumerate(out_axis):
        expected = math.exp(-0.5 * (BOX * 2**f * math.pi) ** 2 * (1 / size**2 - 1 / full**2))
        assert g_sin == g_cos == pytest.approx(expected, rel=1e-6)
    assert all(a[0] > b[0] for a, b in itertools.pairwise(out_axis))  # higher frequency, more damping
    assert all(gain_of(gains, head, f, 2) == (1.0, 1.0) for f in range(c.num_freqs))  # input axis: 64 always
    identity_and_other_features = [0, 1, 2, 3, 4] + [COORD_DIM + (f * COORD_DIM + d) * 2 + k
                                                     for f in range(c.num_freqs) for d in (0, 3, 4) for k in (0, 1)]
    assert torch.all(gains[head, identity_and_other_features] == 1.0)


def test_a_bias_has_no_input_axis_to_damp():
    t = table(8)
    gains = band_limit_gains(t, config())
    head = next(i for i, s in enumerate(t.slots) if s.name == "layer1.0.conv1.bias")  # (2,) of 16
    assert gain_of(gains, head, 2, 1)[0] < 1.0
    assert all(gain_of(gains, head, f, 2) == (1.0, 1.0) for f in range(4))


@pytest.mark.parametrize("width", [8, 33, FULL_WIDTH])
def test_switching_it_on_keeps_the_full_network_and_changes_only_narrower_ones(width):
    torch.manual_seed(0)
    plain = HyperNet(config(band_limit=0.0))
    limited = HyperNet(config())
    limited.load_state_dict(plain.state_dict())
    t = table(width)
    with torch.no_grad():
        a, b = plain(t), limited(t)
    if width == FULL_WIDTH:
        assert torch.equal(a, b)
    else:
        assert not torch.allclose(a, b)


def test_gradients_reach_the_input_weights_scaled_by_their_gain():
    torch.manual_seed(0)
    limited = HyperNet(config())
    t = table(16)
    gains = band_limit_gains(t, limited.config)[:, :, None]  # (Hd, E, 1)
    folded = HyperNet(config(band_limit=0.0))  # a plain INR holding the folded input weights
    folded.load_state_dict({**limited.state_dict(), "w_in": limited.w_in.detach() * gains})
    limited(t).square().sum().backward()
    folded(t).square().sum().backward()
    assert (gains < 0.5).any()
    assert torch.allclose(limited.w_in.grad, folded.w_in.grad * gains, atol=1e-6)
    assert torch.allclose(limited.w_out.grad, folded.w_out.grad, atol=1e-6)


def test_weights_of_a_band_limited_inr_need_the_table():
    with pytest.raises(ValueError, match="pass the table"):
        HyperNet(config()).weights()


def test_it_needs_a_head_per_tensor():
    with pytest.raises(ValueError, match="head_per_block"):
        HyperNetConfig(band_limit=0.3)
    with pytest.raises(InvalidParameter, match="head_per_block"):
        TrainConfig(base="b", out="o", scope="all", band_limit=0.3, head_per_block=False)


def test_a_checkpoint_keeps_it_and_generation_applies_it(tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "bl.safetensors", inr=config()))
    assert ckpt.manifest.inr.band_limit == pytest.approx(BOX)
    served = generate(ckpt, 12, backend="torch")
    plain = HyperNet(config(band_limit=0.0))
    plain.load_state_dict(ckpt.hypernet.state_dict())
    t = table(12)
    with torch.no_grad():
        limited, unlimited = scatter(t, ckpt.hypernet(t)), scatter(t, plain(t))
    for name in limited:
        assert torch.allclose(served[name], limited[name], atol=1e-6)
    assert not all(torch.allclose(served[n], unlimited[n], atol=1e-6) for n in limited)


def test_served_widths_reuse_their_scaled_weights_until_the_inr_changes():
    # The GPU dispatch keeps device copies by tensor identity, so a width served twice must hand it
    # the same input weights; an in-place update (an optimizer step) must not be served stale.
    torch.manual_seed(0)
    inr = HyperNet(config())
    with torch.no_grad():
        first, again, other = inr.weights(table(16)).w_in, inr.weights(table(16)).w_in, inr.weights(table(8)).w_in
        assert again is first and other is not first
        inr.w_in.mul_(2.0)
        updated = inr.weights(table(16)).w_in
    assert updated is not first
    assert torch.allclose(updated, 2.0 * first)
    assert torch.equal(updated, inr.w_in.detach() * band_limit_gains(table(16), inr.config)[:, :, None])


def test_an_ema_copy_does_not_inherit_the_original_s_scaled_weights():
    torch.manual_seed(0)
    inr = HyperNet(config())
    with torch.no_grad():
        original = inr.weights(table(16)).w_in
        ema = copy.deepcopy(inr)
        ema.w_in.add_(1.0)  # its version and values move away from the original's
        copied = ema.weights(table(16)).w_in
    assert torch.allclose(copied, original + band_limit_gains(table(16), inr.config)[:, :, None])


def test_training_steps_see_fresh_differentiable_weights():
    inr = HyperNet(config())
    w_in = inr.weights(table(16)).w_in
    assert w_in.requires_grad and w_in.grad_fn is not None
    assert inr.weights(table(16)).w_in is not w_in
