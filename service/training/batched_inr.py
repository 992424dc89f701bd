"""The INR's training forward in a few batched ops: the math of ``kernels.reference``, launched per
bucket of similar-sized heads instead of per head.

The reference evaluates head h with ``addmm`` on ``w_in[h]``, ``w_hidden[h, l]`` ...: every index of
a stacked parameter is a ``select`` whose backward writes a full-size zero tensor, about 7,800
dispatched ops per training step in all. Here, per width (``WidthPlan``, cached):

- heads are sorted by row count into buckets (``_buckets``), and each bucket runs as one
  ``baddbmm`` per layer over (G, R_max, .). On CUDA a bucket takes heads down to half its largest,
  shorter heads padded by repeating their last row (5 buckets at width 64 for a head per generated
  tensor, not 36 heads; ~10% more rows, whose outputs are dropped and so get no gradient). On a CPU,
  where a wide step is bound by arithmetic rather than launches, buckets hold equal-sized heads only
  (8 at width 64), so no row is computed twice;
- the table's rows go into that padded layout with one gather and come back with another, and
  each stacked parameter is permuted into bucket order with one index and split once (backward:
  one scatter and one ``cat`` per parameter);
- the band-limit gains (``model.band_limit_gains``) are built once per width, on the device, and
  folded into ``w_in`` with one multiply; coordinate noise is skipped when the INR's noise is 0;
- the output goes into the generated tensors with ``coords.scatter`` (one split), and the
  Frobenius-norm term is one segment sum over rows instead of a norm per tensor.

Only one sample (K = 1), clean or noisy: what training uses. The result
equals ``HyperNet.forward(table, samples=1, seed, clean_first=seed is None)`` up to float rounding
(tests/training/test_batched_inr.py checks outputs and gradients at several widths).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.reference import counter_hashes, encode, jittered, sample_key
from service.hypernet import HyperNet, coord_table
from service.hypernet.coords import CoordTable
from service.hypernet.model import band_limit_gains

PADDING = {True: 2.0, False: 1.0}  # max_padding of a bucket, by "on CUDA"


@dataclass(frozen=True)
class Bucket:
    """``heads`` heads evaluated together, each padded to ``rows`` rows."""

    heads: int
    rows: int


@dataclass(frozen=True)
class WidthPlan:
    """Everything about one width that does not change between steps, on the training device."""

    table: CoordTable
    buckets: tuple[Bucket, ...]
    head_order: torch.Tensor  # (Hb,) int64 the non-empty heads, bucket by bucket
    gather: torch.Tensor  # (P,) int64 table row of each padded row, P = sum of heads * rows
    scatter: torch.Tensor  # (N,) int64 padded row of each table row
    gains: torch.Tensor | None  # (Hd, E, 1) band-limit gains, None when band limiting is off
    hashed: torch.Tensor | None  # (N, D) first hash round of the coordinate noise, None when noise is 0
    slot_rows: tuple[int, ...]  # rows of each generated tensor, table order
    row_mask: torch.Tensor  # (N, O) 1 where an output is part of its tensor (a bias keeps column 0)
    row_slot: torch.Tensor  # (N,) int64 index of each row's tensor


def _buckets(offsets: list[int], max_padding: float = 2.0
             ) -> tuple[tuple[Bucket, ...], list[int], list[int], list[int]]:
    """(buckets, head order, gather, scatter) for heads whose rows are ``offsets[h]:offsets[h + 1]``.

    Heads go largest first; a bucket takes heads down to 1/``max_padding`` of its largest, so padding
    at most doubles any head at 2.0 (and in practice adds ~10%: a role's blocks of one stage share a
    shape); 1.0 makes buckets of equal-sized heads only, with no padding."""
    rows = [hi - lo for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)]
    order = sorted((h for h in range(len(rows)) if rows[h]), key=lambda h: (-rows[h], h))
    buckets: list[Bucket] = []
    gather: list[int] = []
    scatter = [0] * offsets[-1]
    for h in order:
        if not buckets or max_padding * rows[h] < buckets[-1].rows:
            buckets.append(Bucket(0, rows[h]))
        width = buckets[-1].rows
        buckets[-1] = Bucket(buckets[-1].heads + 1, width)
        base, start = len(gather), offsets[h]
        gather += [start + min(i, rows[h] - 1) for i in range(width)]  # short heads repeat their last row
        for i in range(rows[h]):
            scatter[start + i] = base + i
    return tuple(buckets), order, gather, scatter


class BatchedINR:
    """A HyperNet's training forward at any width of ``scope``; per-width constants kept here."""

    def __init__(self, hn: HyperNet, scope: str, in_channels: int, num_classes: int,
                 max_padding: float | None = None):
        self.hn, self.scope, self.in_channels, self.num_classes = hn, scope, in_channels, num_classes
        # A GPU step is launch-bound: fewer, padded launches win. A CPU step is compute-bound at wide
        # widths: padding's extra rows cost more than the launches they save (docs/BENCHMARKS.md).
        self.max_padding = max_padding or PADDING[hn.w_in.device.type == "cuda"]
        self._plans: dict[int, WidthPlan] = {}

    def plan(self, width: int) -> WidthPlan:
        if width not in self._plans:
            self._plans[width] = self._make_plan(width)
        return self._plans[width]

    @torch.no_grad()
    def _make_plan(self, width: int) -> WidthPlan:
        c, device = self.hn.config, self.hn.w_in.device
        table = coord_table(self.scope, width, self.in_channels, self.num_classes, c.norm, c.noise, str(device))
        gains = band_limit_gains(table, c).to(device)[:, :, None] if c.band_limit > 0 else None
        hashed = counter_hashes(table.rows, table.coords.shape[1], device) if c.noise > 0 else None
        slot_rows = tuple(s.stop - s.start for s in table.slots)
        row_mask = torch.zeros(table.rows, c.out_dim)
        for s in table.slots:
            used = s.shape[2] * s.shape[3] if len(s.shape) == 4 else 1
            row_mask[s.start : s.stop, :used] = 1.0
        row_slot = torch.repeat_interleave(torch.arange(len(slot_rows)), torch.tensor(slot_rows))
        buckets, order, gather, scatter = _buckets(self.hn.head_offsets(table), self.max_padding)
        order_t, gather_t, scatter_t = (torch.tensor(v, dtype=torch.int64, device=device)
                                        for v in (order, gather, scatter))
        return WidthPlan(table, buckets, order_t, gather_t, scatter_t, gains, hashed, slot_rows,
                         row_mask.to(device), row_slot.to(device))

    def forward(self, plan: WidthPlan, seed: int | None) -> torch.Tensor:
        """(N, O) outputs at ``plan``'s width: the clean sample (``seed`` None) or noisy sample 0 of
        ``seed``, as ``inr_mean_reference(..., samples=1, seed=seed, clean_first=seed is None)``."""
        hn, table = self.hn, plan.table
        v = table.coords
        if seed is not None and plan.hashed is not None:
            v = jittered(v, table.jitter, sample_key(seed, 0), plan.hashed)
        e = encode(v, hn.config.num_freqs)[plan.gather]  # (P, E): every bucket's padded rows
        w_in = hn.w_in if plan.gains is None else hn.w_in * plan.gains
        sizes = [b.heads for b in plan.buckets]

        def by_bucket(param: torch.Tensor) -> tuple[torch.Tensor, ...]:  # bucket order, then one split
            return torch.split(param.index_select(0, plan.head_order), sizes)

        # Biases and residual scales shaped for broadcasting over rows once, not once per bucket.
        w_ins, b_in = by_bucket(w_in), by_bucket(hn.b_in[:, None, :])  # (G, E, H), (G, 1, H)
        w_out, b_out = by_bucket(hn.w_out), by_bucket(hn.b_out[:, None, :])
        # (G, L, H, H), (G, L, 1, H), (G, L, 1, 1): hidden layers stay stacked; a bucket unbinds them.
        w_hid, b_hid = by_bucket(hn.w_hidden), by_bucket(hn.b_hidden[:, :, None, :])
        scales = by_bucket(hn.res_scale[:, :, None, None])
        outs = []
        bucket_rows = torch.split(e, [b.heads * b.rows for b in plan.buckets])
        for bucket, rows, wi, bi, whs, bhs, rss, wo, bo in zip(
                plan.buckets, bucket_rows, w_ins, b_in, w_hid, b_hid, scales, w_out, b_out, strict=True):
            x = torch.baddbmm(bi, rows.view(bucket.heads, bucket.rows, -1), wi).relu_()  # (G, R, H)
            for wh, bh, rs in zip(whs.unbind(1), bhs.unbind(1), rss.unbind(1), strict=True):
                x = torch.addcmul(x, rs, torch.baddbmm(bh, x, wh).relu_())
            outs.append(torch.baddbmm(bo, x, wo).flatten(0, 1))  # (G * R, O)
        return torch.cat(outs)[plan.scatter] * table.out_scale[:, None]  # (N, O), table order

    def norm_sum(self, plan: WidthPlan, out: torch.Tensor) -> torch.Tensor:
        """sum over generated tensors of ||t||_F, from the rows: one segment sum, not a norm per tensor."""
        per_row = (out.square() * plan.row_mask).sum(1)  # (N,)
        squares = torch.zeros(len(plan.slot_rows), device=out.device, dtype=out.dtype).index_add_(
            0, plan.row_slot, per_row)
        # ||t|| has gradient t/||t||, undefined at t = 0 (a zero-initialised head): take 0 there, as torch.norm.
        nonzero = squares > 0
        return (torch.where(nonzero, squares, 1.0).sqrt() * nonzero).sum()
