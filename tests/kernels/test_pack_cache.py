"""The fused kernel's packed-weight cache (kernels.fused_pack.PACKS on kernels.memo.TensorMemo).

Generations run on worker threads, and a band-limited checkpoint hands the kernel a different
``w_in`` per width (more widths than the old 8-entry global cache held), so packs are fetched,
made and dropped concurrently. Without CUDA the kernel runs in Triton's interpreter.
"""

from __future__ import annotations

import gc
from concurrent.futures import ThreadPoolExecutor

import torch

from kernels import fused_pack
from kernels.reference import inr_mean_reference
from tests.kernels.test_fused_inr import _interpreter_while_testing, fused_inr, random_table, random_weights

__all__ = ["_interpreter_while_testing"]  # the autouse fixture: TRITON_INTERPRET=1 at launch without CUDA

WIDTHS = 12  # more than the 8 packs the old module-global OrderedDict kept
FREQS = 2


def _per_width_weights():
    """One scaled ``w_in`` per width and shared other weights, as a band-limited checkpoint has."""
    base = random_weights(2, 5, FREQS, 16, 1, 9)
    return [base._replace(w_in=base.w_in * (1.0 + 0.1 * i)) for i in range(WIDTHS)]


def test_concurrent_generations_of_more_than_8_widths_get_their_own_packs():
    weights = _per_width_weights()
    coords, jitter, scale, offsets = random_table(40, 2)
    want = [inr_mean_reference(coords, jitter, scale, offsets, w, FREQS, 2, seed=3) for w in weights]

    def generate(i: int) -> torch.Tensor:
        return fused_inr.fused_inr_mean(coords, jitter, scale, offsets, weights[i % WIDTHS], FREQS, 2, seed=3)

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(generate, range(3 * WIDTHS)))  # every width three times, interleaved
    for i, out in enumerate(got):
        assert (out - want[i % WIDTHS]).abs().max().item() <= 1e-5, f"width #{i % WIDTHS} got another width's pack"
    assert all(fused_pack.PACKS.holds(id(w.w_in)) for w in weights)  # none evicted by the others


def test_a_pack_dies_with_its_input_weights_and_follows_in_place_updates():
    weights = _per_width_weights()[0]
    coords, jitter, scale, offsets = random_table(24, 2)
    fused_inr.fused_inr_mean(coords, jitter, scale, offsets, weights, FREQS, 1)
    with torch.no_grad():
        weights.w_hidden.mul_(0.5)  # an optimizer step on a shared weight: the old pack is stale
    got = fused_inr.fused_inr_mean(coords, jitter, scale, offsets, weights, FREQS, 1)
    want = inr_mean_reference(coords, jitter, scale, offsets, weights, FREQS, 1)
    assert (got - want).abs().max().item() <= 1e-5

    source_id = id(weights.w_in)
    assert fused_pack.PACKS.holds(source_id)
    del weights
    gc.collect()
    assert not fused_pack.PACKS.holds(source_id)  # no pack outlives the width it was made for
