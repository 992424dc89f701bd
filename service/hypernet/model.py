"""The implicit hypernetwork: one residual MLP head per tensor role, parameters stacked by head."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from kernels.memo import TensorMemo
from kernels.reference import INRWeights, inr_mean_reference
from service.archs import ROLES, Scope, morphed_blocks
from service.hypernet.coords import COORD_DIM, CoordTable

# Widths whose band-limited input weights (1.4 MB each at hidden 128) stay cached outside autograd.
KEPT_WIDTHS = 16
_SCALED_W_IN: TensorMemo[torch.Tensor] = TensorMemo(per_source=KEPT_WIDTHS)  # w_in -> {table shape: scaled w_in}


class HyperNetConfig(BaseModel):
    """Shape of the INR; stored in every checkpoint's manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    coord_dim: int = Field(COORD_DIM, ge=1)
    hidden: int = Field(128, ge=1, le=4096)
    layers: int = Field(3, ge=0, le=64, description="residual hidden layers after the input layer")
    num_freqs: int = Field(8, ge=0, le=11, description="2^0..2^(F-1); float32 resolves up to ~2^10")
    out_dim: int = Field(9, ge=1, description="k*k values per (out, in) channel pair")
    heads: int = Field(len(ROLES), ge=1)
    head_per_block: bool = Field(
        False, description="one head per generated tensor (role x block) instead of one per role shared "
                           "by the blocks: more parameters, the same work per row")
    band_limit: float = Field(
        0.0, ge=0, le=4.0,
        description="anti-aliasing of the channel-ratio frequencies at narrow widths (0: off); see band_limit_gains")
    norm: float = Field(64.0, gt=0, description="divisor of the tensor-size features")
    noise: float = Field(1.0, ge=0, description="coordinate noise, in channels")
    residual_init: float = 0.1

    @property
    def encoded_dim(self) -> int:
        return self.coord_dim * (1 + 2 * self.num_freqs)

    @model_validator(mode="after")
    def _band_limit_needs_a_head_per_tensor(self) -> HyperNetConfig:
        # The gains are folded into each head's input weights, which needs every row of a head to
        # share one tensor shape: true only with a head per generated tensor.
        if self.band_limit > 0 and not self.head_per_block:
            raise ValueError("band_limit needs head_per_block (one head per generated tensor)")
        return self


def band_limit_gains(table: CoordTable, config: HyperNetConfig) -> torch.Tensor:
    """(Hd, E) gains on each head's encoded features at the table's width.

    A channel axis of S channels samples the weight function at spacing 1/S, so a frequency
    above S/2 cycles aliases: detail the INR gives the full network turns into an arbitrary
    pattern in a narrow one, and training at narrow widths then fights that detail. As in
    mip-NeRF's integrated encoding, a sinusoid of angular frequency w = 2^f pi seen through a
    footprint of standard deviation s is attenuated by exp(-(w s)^2 / 2); with s = band_limit / S
    and gains taken relative to the full-width size S_full,

        gain(f, S) = exp(-(band_limit * 2^f pi)^2 / 2 * (1/S^2 - 1/S_full^2)),

    which is exactly 1 at full width (so switching it on keeps the full network and every fixed-size
    axis as they were) and damps a narrow network's high frequencies. band_limit = 1/sqrt(12) is
    the standard deviation of a box one channel wide."""
    c = config
    gains = torch.ones(len(table.slots), c.encoded_dim)
    if c.band_limit == 0:
        return gains
    # The sin/cos columns in reference.encode's order, (Hd, F, D, 2), as a view that writes into gains.
    sincos = gains[:, c.coord_dim :].view(len(table.slots), c.num_freqs, c.coord_dim, 2)
    angular = c.band_limit * math.pi * 2.0 ** torch.arange(c.num_freqs, dtype=torch.float64)  # (F,)
    for h, slot in enumerate(table.slots):
        # Coordinate feature 1 + a is the channel ratio along tensor axis a (coords.py): output
        # channels, then input channels; a bias (S0,) has only the first.
        for axis in range(2 if len(slot.shape) == 4 else 1):
            size, full = slot.shape[axis], slot.full_shape[axis]
            gain = torch.exp(-0.5 * angular.square() * (1.0 / size**2 - 1.0 / full**2))  # (F,)
            sincos[h, :, 1 + axis, :] = gain[:, None].float()
    return gains


def _at_width(memo: TensorMemo[torch.Tensor], source: torch.Tensor, table: CoordTable,
              make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``make()``, a value derived from parameter ``source`` at ``table``'s width. In a training step
    it is made fresh (differentiable). Outside autograd it carries no graph and is kept per table shape
    (the last ``KEPT_WIDTHS``) beside the parameter (kernels.memo), not on the module, so an EMA
    deepcopy or a state_dict never carries it, and a served width hands the GPU dispatch the same
    tensor every time, its device copy reused instead of re-uploaded."""
    if torch.is_grad_enabled() and source.requires_grad:
        return make()
    return memo.get(source, table.slots, make)


def head_count(scope: Scope | str, head_per_block: bool) -> int:
    """Heads of an INR over ``scope``: one per role, or one per generated tensor (role x morphed block)."""
    return len(ROLES) * (len(morphed_blocks(scope)) if head_per_block else 1)


def _uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    # PyTorch's default Linear init (kaiming_uniform a=sqrt(5)) reduces to U(+-1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class HyperNet(nn.Module):
    """Maps coordinate-table rows to weight values; see ``kernels.reference`` for the math."""

    def __init__(self, config: HyperNetConfig):
        super().__init__()
        self.config = config
        c, hd, h, layers = config, config.heads, config.hidden, config.layers
        self.w_in = _uniform((hd, c.encoded_dim, h), c.encoded_dim)
        self.b_in = _uniform((hd, h), c.encoded_dim)
        self.w_hidden = _uniform((hd, layers, h, h), h)
        self.b_hidden = _uniform((hd, layers, h), h)
        self.res_scale = nn.Parameter(torch.full((hd, layers), c.residual_init))
        self.w_out = _uniform((hd, h, c.out_dim), h)
        self.b_out = _uniform((hd, c.out_dim), h)

    def head_offsets(self, table: CoordTable) -> list[int]:
        """Row boundaries of this INR's heads over ``table`` (per role, or per generated tensor)."""
        return list(table.slot_offsets if self.config.head_per_block else table.head_offsets)

    def role_heads(self, role: str) -> list[int]:
        """Indices of the heads that generate ``role`` (one, or one per block, in block order)."""
        per_role = self.config.heads // len(ROLES)
        first = ROLES.index(role) * per_role
        return list(range(first, first + per_role))

    def weights(self, table: CoordTable | None = None) -> INRWeights:
        """The parameters as the kernel and the reference read them at ``table``'s width: with band
        limiting, each head's input weights are scaled by its gains (``band_limit_gains``), which
        folds the anti-aliasing into the weights so the evaluation math stays the same."""
        c = self.config
        if table is None and c.band_limit > 0:
            raise ValueError("this INR's weights depend on the width (band limiting): pass the table")
        w_in = self.w_in if table is None or c.band_limit == 0 else self._band_limited_w_in(table)
        return INRWeights(w_in, self.b_in, self.w_hidden, self.b_hidden, self.res_scale, self.w_out, self.b_out)

    def _band_limited_w_in(self, table: CoordTable) -> torch.Tensor:
        """(Hd, E, H) input weights scaled by ``table``'s gains (kept per width: ``_at_width``)."""
        w_in = self.w_in
        return _at_width(_SCALED_W_IN, w_in, table,
                         lambda: w_in * band_limit_gains(table, self.config).to(w_in)[:, :, None])

    def forward(
        self, table: CoordTable, samples: int = 1, seed: int = 0, clean_first: bool = True
    ) -> torch.Tensor:
        """Mean of ``samples`` evaluations over the table: (N, out_dim)."""
        return inr_mean_reference(
            table.coords, table.jitter, table.out_scale, self.head_offsets(table), self.weights(table),
            self.config.num_freqs, samples=samples, seed=seed, clean_first=clean_first,
        )

    @torch.no_grad()
    def widened(self, hidden: int, seed: int = 0) -> HyperNet:
        """A copy with ``hidden`` units per layer that computes exactly the same function (Net2Net's
        function-preserving growth): the new units get fresh input weights, but nothing flows from them
        into the old units or the output yet (those weights start at zero), so the generated networks are
        unchanged and training grows the extra capacity from where this INR stands."""
        old = self.config.hidden
        if hidden < old:
            raise ValueError(f"cannot widen a hidden-{old} INR to {hidden}")
        with torch.random.fork_rng(devices=[]):  # the new units' init must not move the caller's RNG
            torch.manual_seed(seed)
            grown = HyperNet(self.config.model_copy(update={"hidden": hidden}))
        grown.w_in[:, :, :old] = self.w_in  # (Hd, E, H): new columns keep their fresh init
        grown.b_in[:, :old] = self.b_in
        grown.w_hidden[:, :, :old, :old] = self.w_hidden  # (Hd, L, H_in, H_out)
        grown.w_hidden[:, :, old:, :old] = 0.0  # new units -> old units: off
        grown.b_hidden[:, :, :old] = self.b_hidden
        grown.res_scale.copy_(self.res_scale)
        grown.w_out.zero_()  # (Hd, H, O): only the old units reach the output
        grown.w_out[:, :old] = self.w_out
        grown.b_out.copy_(self.b_out)
        return grown.train(self.training)

    @torch.no_grad()
    def split_per_block(self, blocks: int) -> HyperNet:
        """A copy with one head per (role, block) that computes exactly the same function: every
        block starts from its role's shared head, and training lets the blocks' heads part. Rows are
        grouped by role, then block, so role r's block b is head r * blocks + b."""
        if self.config.head_per_block:
            raise ValueError("this INR already has a head per block")
        return self._each_head_repeated(blocks, {"head_per_block": True})

    def _each_head_repeated(self, times: int, update: dict[str, Any]) -> HyperNet:
        """A copy whose config takes ``update`` and ``times`` as many heads, head h's parameters
        copied to heads h * times .. h * times + times - 1: the same function, the heads free to part."""
        split = HyperNet(self.config.model_copy(update={**update, "heads": self.config.heads * times}))
        for name, param in self.named_parameters():
            getattr(split, name).copy_(param.repeat_interleave(times, dim=0))
        return split.train(self.training)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"heads={c.heads}{' (per block)' if c.head_per_block else ''}, "
            f"hidden={c.hidden}, layers={c.layers}, num_freqs={c.num_freqs}, "
            f"{f'band_limit={c.band_limit:g}, ' if c.band_limit else ''}"
            f"out_dim={c.out_dim}, params={sum(p.numel() for p in self.parameters()):,}"
        )
