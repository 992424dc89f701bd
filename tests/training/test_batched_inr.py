"""The batched training forward (service.training.batched_inr) against the reference math
(kernels.reference through HyperNet.forward): outputs, generated tensors, the norm term and every
parameter's gradient, at several widths, odd ones included."""

from __future__ import annotations

import pytest
import torch

from service.hypernet import HyperNet, HyperNetConfig, coord_table, scatter
from service.hypernet.model import head_count
from service.training.batched_inr import BatchedINR, Bucket, _buckets

SHAPES = {
    "per-tensor, band-limited, noisy": dict(head_per_block=True, band_limit=0.2887, noise=1.0),
    "per-tensor, clean (the shipped shape)": dict(head_per_block=True, band_limit=0.2887, noise=0.0),
    "per-role": dict(head_per_block=False, noise=1.0),
}


def inr(shape: dict, seed: int = 0) -> HyperNet:
    torch.manual_seed(seed)
    heads = head_count("all", shape["head_per_block"])
    hn = HyperNet(HyperNetConfig(hidden=24, layers=2, num_freqs=4, heads=heads, **shape))
    with torch.no_grad():  # non-trivial residual scales and biases, so every parameter matters
        for p in hn.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return hn


def reference(hn: HyperNet, width: int, seed: int | None):
    c = hn.config
    table = coord_table("all", width, 1, 10, c.norm, c.noise)
    out = hn(table, samples=1, seed=seed or 0, clean_first=seed is None)
    gen = scatter(table, out)
    return out, gen, torch.stack([g.norm() for g in gen.values()]).sum()


def batched(hn: HyperNet, width: int, seed: int | None, max_padding: float | None = None):
    fast = BatchedINR(hn, "all", 1, 10, max_padding=max_padding)
    plan = fast.plan(width)
    out = fast.forward(plan, seed)
    return out, scatter(plan.table, out), fast.norm_sum(plan, out)


@pytest.mark.parametrize("padding", [1.0, 2.0], ids=["exact buckets", "padded buckets"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("width", [1, 8, 13, 37, 64])
def test_outputs_tensors_and_norm_equal_the_reference(shape, width, padding):
    hn = inr(shape)
    for seed in (None, 7):
        out_ref, gen_ref, norm_ref = reference(hn, width, seed)
        out, gen, norm = batched(hn, width, seed, padding)
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
        assert gen.keys() == gen_ref.keys()
        for name, t in gen.items():
            assert t.shape == gen_ref[name].shape, name
            torch.testing.assert_close(t, gen_ref[name], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm, norm_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding", [1.0, 2.0], ids=["exact buckets", "padded buckets"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("width", [8, 21, 64])
def test_gradients_equal_the_reference(shape, width, padding):
    """Gradients of a loss touching every generated tensor and the norm term, per parameter."""
    hn = inr(shape, seed=1)
    probe = {k: torch.randn(t.shape, generator=torch.Generator().manual_seed(i))
             for i, (k, t) in enumerate(reference(hn, width, None)[1].items())}

    def grads(fn):
        hn.zero_grad(set_to_none=True)
        _, gen, norm = fn(hn, width, 3)
        (sum((gen[k] * p).sum() for k, p in probe.items()) + 0.1 * norm).backward()
        return {n: p.grad.clone() for n, p in hn.named_parameters()}

    want, got = grads(reference), grads(lambda *a: batched(*a, max_padding=padding))
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_norm_of_a_zero_tensor_has_zero_gradient_not_nan():
    """Zero-initialised conv2 heads make their tensors exactly 0, where ||t|| has no gradient."""
    hn = inr(SHAPES["per-role"])
    with torch.no_grad():
        hn.w_out.zero_()
        hn.b_out.zero_()
    fast = BatchedINR(hn, "all", 1, 10)
    plan = fast.plan(16)
    fast.norm_sum(plan, fast.forward(plan, None)).backward()
    assert all(torch.isfinite(p.grad).all() for p in hn.parameters() if p.grad is not None)


def test_heads_bucket_by_size_with_short_heads_padded_and_empty_heads_left_out():
    # Heads of 4, 4, 3, 8, 0, 2 rows: [8, 4, 4] (down to half of 8), then [3, 2]; the empty head is skipped.
    offsets = [0, 4, 8, 11, 19, 19, 21]
    buckets, order, gather, scatter = _buckets(offsets)
    assert buckets == (Bucket(heads=3, rows=8), Bucket(heads=2, rows=3))
    assert order == [3, 0, 1, 2, 5]
    # Head 0 (rows 0-3) fills padded rows 8-15, its last row repeated; head 5 (rows 19, 20) pads to 3.
    assert gather[8:16] == [0, 1, 2, 3, 3, 3, 3, 3] and gather[-3:] == [19, 20, 20]
    assert [scatter[r] for r in (0, 3, 11, 19, 20)] == [8, 11, 0, 27, 28]
    assert len(scatter) == 21 and len(set(scatter)) == 21  # every table row has its own padded row
    # Equal sizes only (a CPU's default): no padding.
    exact, _, gather_exact, _ = _buckets(offsets, max_padding=1.0)
    assert [b.rows for b in exact] == [8, 4, 3, 2] and len(gather_exact) == 21
    # The shipped shape at full width: 36 heads in 5 padded buckets (~10% more rows; CUDA's default),
    # or 8 exact ones (a CPU's).
    hn = inr(SHAPES["per-tensor, clean (the shipped shape)"])
    padded = BatchedINR(hn, "all", 1, 10, max_padding=2.0).plan(64)
    assert len(padded.buckets) == 5 and padded.table.rows < len(padded.gather) < 1.15 * padded.table.rows
    on_cpu = BatchedINR(hn, "all", 1, 10).plan(64)
    assert len(on_cpu.buckets) == 8 and len(on_cpu.gather) == on_cpu.table.rows
