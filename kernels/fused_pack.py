"""The fused kernel's weights, re-laid out once per source for ``kernels.fused_inr`` (see its
module docstring for the layouts), and kept beside the source tensors in a locked memo."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from kernels.memo import TensorMemo
from kernels.reference import INRWeights


def next_pow2(n: int, floor: int = 1) -> int:
    return max(floor, 1 << max(0, n - 1).bit_length())


class Packed(NamedTuple):
    """Weights re-laid out for the kernel (see kernels.fused_inr's module docstring); float32 or bfloat16."""

    wv: torch.Tensor
    ws: torch.Tensor
    wc: torch.Tensor
    b_in: torch.Tensor
    wh: torch.Tensor
    bh: torch.Tensor
    rs: torch.Tensor
    wo: torch.Tensor
    bo: torch.Tensor
    freq: torch.Tensor
    da: int
    f_pad: int
    hp: int
    op: int


def pack(w: INRWeights, dim: int, num_freqs: int, precision: str) -> Packed:
    hd, e, h = w.w_in.shape
    layers, o = w.w_hidden.shape[1], w.w_out.shape[2]
    if e != dim * (1 + 2 * num_freqs):
        raise ValueError(f"w_in has {e} input rows; D={dim}, F={num_freqs} needs {dim * (1 + 2 * num_freqs)}")
    # DA >= 8 so the zero-interleaved identity tile is >= 16 wide; F_PAD * DA >= 16 likewise.
    da = next_pow2(dim, 8)
    f_pad = next_pow2(num_freqs, max(1, 16 // da))
    hp, op = next_pow2(h, 16), next_pow2(o, 16)
    dev, f32 = w.w_in.device, torch.float32
    w_in = w.w_in.detach().to(f32)
    wv = torch.zeros(hd, 2 * da, hp, device=dev, dtype=f32)
    wv[:, 0 : 2 * dim : 2, :h] = w_in[:, :dim]  # identity column d sits at tile column 2d
    # Reference encoding index of (f, d, sin|cos) is dim + (f * dim + d) * 2 + {0, 1}.
    sincos = w_in[:, dim:].reshape(hd, num_freqs, dim, 2, h)
    ws = torch.zeros(hd, f_pad, da, hp, device=dev, dtype=f32)
    wc = torch.zeros_like(ws)
    ws[:, :num_freqs, :dim, :h] = sincos[..., 0, :]
    wc[:, :num_freqs, :dim, :h] = sincos[..., 1, :]
    wh = torch.zeros(hd, max(layers, 1), hp, hp, device=dev, dtype=f32)  # >= 1 layer: no null pointer
    wh[:, :layers, :h, :h] = w.w_hidden.detach()
    wo = torch.zeros(hd, hp, op, device=dev, dtype=f32)
    wo[:, :h, :o] = w.w_out.detach()
    mat = torch.bfloat16 if precision == "bf16" else f32

    def padded(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        out = torch.zeros(shape, device=dev, dtype=f32)
        out[tuple(slice(0, s) for s in t.shape)] = t.detach()
        return out

    freq = torch.zeros(f_pad, device=dev, dtype=f32)
    freq[:num_freqs] = (2.0 ** torch.arange(num_freqs, dtype=f32, device=dev)) * math.pi
    return Packed(
        wv.to(mat), ws.reshape(hd, f_pad * da, hp).to(mat), wc.reshape(hd, f_pad * da, hp).to(mat),
        padded(w.b_in, (hd, hp)), wh.to(mat).contiguous(), padded(w.b_hidden, (hd, max(layers, 1), hp)),
        padded(w.res_scale, (hd, max(layers, 1))), wo.to(mat), padded(w.b_out, (hd, op)), freq,
        da, f_pad, hp, op,
    )


# Packed weights, kept beside ``w_in`` (kernels.memo: locked, since generations run on worker
# threads, and dropped when ``w_in`` dies). A band-limited checkpoint scales ``w_in`` per width
# (service.hypernet.model keeps the last KEPT_WIDTHS), so each served width has its own source and
# its pack lives exactly as long as that width's input weights; other checkpoints share one
# ``w_in``, with a pack per (precision, encoding). The rest of the weights are part of the key
# (identity, version, storage) and are held by the entry, so their ids cannot be reused meanwhile.
PACKS_PER_SOURCE = 4
PACKS: TensorMemo[tuple[tuple[torch.Tensor, ...], Packed]] = TensorMemo(per_source=PACKS_PER_SOURCE)


def packed(w: INRWeights, dim: int, num_freqs: int, precision: str) -> Packed:
    """``w`` packed (kept per source ``w.w_in``: see PACKS)."""
    rest = tuple(w[1:])
    key = (tuple((id(t), t._version, t.data_ptr()) for t in rest), dim, num_freqs, precision)
    held, result = PACKS.get(w.w_in, key, lambda: (rest, pack(w, dim, num_freqs, precision)))
    assert all(a is b for a, b in zip(held, rest, strict=True)), "a pack keyed on other weights"
    return result
