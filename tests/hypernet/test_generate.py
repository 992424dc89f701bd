"""generate(): deterministic folded state_dicts of any allowed width, K-sample mean, bounds."""

import pytest
import torch

from service.archs import tensor_specs
from service.errors import InvalidParameter, WidthOutOfRange
from service.hypernet import generate, load_checkpoint
from service.hypernet.generate import generated_tensors, resolve_samples
from service.hypernet.model import HyperNetConfig
from tests.factories import tiny_checkpoint


def test_same_request_gives_identical_bytes(tiny_ckpt, tmp_path_factory):
    # A second file from the same factory seed: same bytes, loaded independently.
    again = load_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("again") / "t.safetensors"))
    assert again.sha256 == tiny_ckpt.sha256
    for k in (1, 3):
        a, b = generate(tiny_ckpt, 20, samples=k), generate(again, 20, samples=k)
        assert list(a) == list(b)
        assert all(a[n].numpy().tobytes() == b[n].numpy().tobytes() for n in a)


@pytest.mark.parametrize("width", [1, 17, 64])
def test_shapes_follow_the_width(tiny_ckpt, width):
    state = generate(tiny_ckpt, width)
    m = tiny_ckpt.manifest
    specs = tensor_specs(m.scope, width, m.in_channels, m.num_classes)
    assert [s.name for s in specs] == list(state)
    assert all(tuple(state[s.name].shape) == s.shape for s in specs)
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in state.values())
    # Fixed layers come straight from the checkpoint.
    assert torch.equal(state["fc.weight"], tiny_ckpt.fixed["fc.weight"])


def test_different_widths_give_different_weights(tiny_ckpt):
    a, b = generate(tiny_ckpt, 16), generate(tiny_ckpt, 17)
    assert a["layer3.2.conv1.weight"].shape != b["layer3.2.conv1.weight"].shape
    # Output channel 0 of a stage-3 block sits at ratio 0.5/16 vs 0.5/17, so its values move.
    assert not torch.equal(a["layer3.0.conv1.bias"][0], b["layer3.0.conv1.bias"][0])
    # Stage 1 has inner width round(16 * w / 64) = 4 at both widths: same coordinates, same values.
    assert torch.equal(a["layer1.0.conv1.weight"], b["layer1.0.conv1.weight"])


@pytest.mark.parametrize("bad", [0, -1, 101, 2.5, True, "3"])
def test_samples_out_of_bounds(tiny_ckpt, bad):
    with pytest.raises(InvalidParameter, match="samples"):
        generate(tiny_ckpt, 16, samples=bad)


@pytest.mark.parametrize("bad", [0, 65, -3, 16.0, True])
def test_width_out_of_range(tiny_ckpt, bad):
    with pytest.raises(WidthOutOfRange, match="allowed range 1..64"):
        generate(tiny_ckpt, bad)


def test_samples_bounds_are_inclusive(tiny_ckpt):
    assert generate(tiny_ckpt, 1, samples=100)["layer1.0.conv1.weight"].shape == (1, 16, 3, 3)


def test_k_mean_with_noise_differs_from_one_clean_sample(tiny_ckpt):
    one, many = generate(tiny_ckpt, 24, samples=1), generate(tiny_ckpt, 24, samples=5)
    diff = (one["layer3.0.conv1.weight"] - many["layer3.0.conv1.weight"]).abs().max().item()
    assert diff > 1e-6
    assert torch.equal(one["layer2.0.shortcut.weight"], many["layer2.0.shortcut.weight"])  # fixed


def test_without_noise_any_k_is_one_sample(tmp_path):
    inr = HyperNetConfig(hidden=16, layers=1, num_freqs=2, noise=0.0)
    quiet = load_checkpoint(tiny_checkpoint(tmp_path / "quiet.safetensors", inr=inr))
    assert resolve_samples(quiet, 5) == 1 and resolve_samples(quiet, None) == 1
    with pytest.raises(InvalidParameter, match="got 101"):  # still validated before it collapses
        resolve_samples(quiet, 101)
    one, many = generate(quiet, 24, samples=1), generate(quiet, 24, samples=5)
    assert all(torch.equal(one[name], many[name]) for name in one)
    # The collapse is a shortcut, not a different network: a true 5-sample mean is the same to rounding.
    mean5 = generated_tensors(quiet, 24, samples=5, backend="torch")
    torch.testing.assert_close(mean5["layer3.0.conv1.weight"], one["layer3.0.conv1.weight"], rtol=0, atol=1e-6)


def test_resolve_samples_defaults_to_the_manifest_and_honours_a_lower_service_bound(tiny_ckpt):
    assert resolve_samples(tiny_ckpt, None) == tiny_ckpt.manifest.default_samples
    assert resolve_samples(tiny_ckpt, 8, max_samples=8) == 8
    with pytest.raises(InvalidParameter, match=r"1\.\.8, got 9"):
        resolve_samples(tiny_ckpt, 9, max_samples=8)
