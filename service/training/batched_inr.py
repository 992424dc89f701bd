"""The INR's training forward in a few batched ops: the math of ``kernels.reference``, launched per
group of equal-sized heads instead of per head.

The reference evaluates head h with ``addmm`` on ``w_in[h]``, ``w_hidden[h, l]`` ...: every index of
a stacked parameter is a ``select`` whose backward writes a full-size zero tensor, about 7,800
dispatched ops per training step in all. Here, per width (``WidthPlan``, cached):

- heads are grouped into runs of consecutive heads with the same row count (a role's blocks of one
  stage share a shape): 14 groups at width 64 for a head per generated tensor, not 36 heads;
- each stacked parameter is split once into those groups (one ``split``, whose backward is one
  ``cat``), and each group runs as ``baddbmm`` over (G, R, .) with its rows viewed straight out of
  the table, which holds a head's rows contiguously;
- the band-limit gains (``model.band_limit_gains``) are built once per width, on the device, and
  folded into ``w_in`` with one multiply; coordinate noise is skipped when the INR's noise is 0;
- the output is split into the generated tensors once, and the Frobenius-norm term is one segment
  sum over rows instead of a norm per tensor.

Only one sample (K = 1), clean or noisy, and no channel embeddings: what training uses. The result
equals ``HyperNet.forward(table, samples=1, seed, clean_first=seed is None)`` up to float rounding
(tests/training/test_batched_inr.py checks outputs and gradients at several widths).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.reference import counter_hashes, encode, sample_key, uniform_noise
from service.hypernet import HyperNet, coord_table
from service.hypernet.coords import CoordTable
from service.hypernet.model import band_limit_gains


@dataclass(frozen=True)
class HeadGroup:
    """``heads`` consecutive heads of ``rows`` rows each, starting at row ``start``."""

    heads: int
    rows: int
    start: int
    empty: bool  # heads with no rows at this width (a band narrower than a channel): skipped


@dataclass(frozen=True)
class WidthPlan:
    """Everything about one width that does not change between steps, on the training device."""

    table: CoordTable
    groups: tuple[HeadGroup, ...]
    gains: torch.Tensor | None  # (Hd, E, 1) band-limit gains, None when band limiting is off
    hashed: torch.Tensor | None  # (N, D) first hash round of the coordinate noise, None when noise is 0
    slot_rows: tuple[int, ...]  # rows of each generated tensor, table order
    row_mask: torch.Tensor  # (N, O) 1 where an output is part of its tensor (a bias keeps column 0)
    row_slot: torch.Tensor  # (N,) int64 index of each row's tensor


def _groups(offsets: list[int]) -> tuple[HeadGroup, ...]:
    groups: list[HeadGroup] = []
    for lo, hi in zip(offsets[:-1], offsets[1:], strict=True):
        rows, last = hi - lo, groups[-1] if groups else None
        if last is not None and last.rows == rows:
            groups[-1] = HeadGroup(last.heads + 1, rows, last.start, rows == 0)
        else:
            groups.append(HeadGroup(1, rows, lo, rows == 0))
    return tuple(groups)


class BatchedINR:
    """A HyperNet's training forward at any width of ``scope``; per-width constants kept here."""

    def __init__(self, hn: HyperNet, scope: str, in_channels: int, num_classes: int):
        if hn.config.channel_embeddings:
            raise ValueError("the batched INR path has no channel embeddings: use the reference path")
        self.hn, self.scope, self.in_channels, self.num_classes = hn, scope, in_channels, num_classes
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
        return WidthPlan(table, _groups(self.hn.head_offsets(table)), gains, hashed, slot_rows,
                         row_mask.to(device), row_slot.to(device))

    def forward(self, plan: WidthPlan, seed: int | None) -> torch.Tensor:
        """(N, O) outputs at ``plan``'s width: the clean sample (``seed`` None) or noisy sample 0 of
        ``seed``, as ``inr_mean_reference(..., samples=1, seed=seed, clean_first=seed is None)``."""
        hn, table = self.hn, plan.table
        v = table.coords
        if seed is not None and plan.hashed is not None:
            v = v + (uniform_noise(sample_key(seed, 0), plan.hashed) - 0.5) * table.jitter
        e = encode(v, hn.config.num_freqs)  # (N, E)
        w_in = hn.w_in if plan.gains is None else hn.w_in * plan.gains
        sizes = [g.heads for g in plan.groups]
        layers = hn.config.layers
        # One split per parameter (and per hidden layer): each group's (G, ...) slices, one backward cat.
        per_group = zip(w_in.split(sizes), hn.b_in.split(sizes), hn.w_out.split(sizes), hn.b_out.split(sizes),
                        zip(*(w.split(sizes) for w in hn.w_hidden.unbind(1))) if layers else [()] * len(sizes),
                        zip(*(b.split(sizes) for b in hn.b_hidden.unbind(1))) if layers else [()] * len(sizes),
                        zip(*(r.split(sizes) for r in hn.res_scale.unbind(1))) if layers else [()] * len(sizes),
                        strict=True)
        outs = []
        for group, (wi, bi, wo, bo, whs, bhs, rss) in zip(plan.groups, per_group, strict=True):
            if group.empty:
                continue
            n = group.heads * group.rows
            x = e[group.start : group.start + n].view(group.heads, group.rows, -1)  # (G, R, E)
            x = torch.baddbmm(bi[:, None, :], x, wi).relu_()  # (G, R, H)
            for wh, bh, rs in zip(whs, bhs, rss, strict=True):
                branch = torch.baddbmm(bh[:, None, :], x, wh).relu_()
                x = torch.addcmul(x, rs[:, None, None], branch)
            outs.append(torch.baddbmm(bo[:, None, :], x, wo).view(n, -1))  # (G * R, O)
        return torch.cat(outs) * table.out_scale[:, None]

    def tensors(self, plan: WidthPlan, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """``coords.scatter`` with one split: (N, O) -> the generated tensors by name."""
        tensors = {}
        for slot, rows in zip(plan.table.slots, out.split(plan.slot_rows), strict=True):
            if len(slot.shape) == 1:
                tensors[slot.name] = rows[:, 0]
            else:  # a k x k kernel takes the first k * k outputs (all of them for 3 x 3: a view)
                k2 = slot.shape[2] * slot.shape[3]
                tensors[slot.name] = (rows if k2 == rows.shape[1] else rows[:, :k2]).reshape(slot.shape)
        return tensors

    def norm_sum(self, plan: WidthPlan, out: torch.Tensor) -> torch.Tensor:
        """sum over generated tensors of ||t||_F, from the rows: one segment sum, not a norm per tensor."""
        per_row = (out.square() * plan.row_mask).sum(1)  # (N,)
        squares = torch.zeros(len(plan.slot_rows), device=out.device, dtype=out.dtype).index_add_(
            0, plan.row_slot, per_row)
        # ||t|| has gradient t/||t||, undefined at t = 0 (a zero-initialised head): take 0 there, as torch.norm.
        nonzero = squares > 0
        return (torch.where(nonzero, squares, 1.0).sqrt() * nonzero).sum()
