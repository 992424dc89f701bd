"""PyTorch reference for evaluating the hypernetwork over a coordinate table.

This is the one definition of the math. It is the CPU generation path, the training forward
(it is differentiable) and the oracle the Triton kernel is tested against. Per row n of a table
(rows grouped by head: rows ``head_offsets[h]:head_offsets[h+1]`` use head h):

    v_k    = coords[n] + (u_k(n, d) - 0.5) * jitter[n]      u from a counter-based hash;
                                                             sample 0 is clean when clean_first
    e      = [v, sin(2^f pi v_d), cos(2^f pi v_d) for f < F, d < D]        (frequency-major)
    x      = relu(e @ w_in[h] + b_in[h])
    x      = x + res_scale[h, l] * relu(x @ w_hidden[h, l] + b_hidden[h, l])   for each l
    y_k    = (x @ w_out[h] + b_out[h]) * out_scale[n]
    out[n] = mean_k y_k

Noise: u_k(n, d) = hash32(hash32(n * D + d) ^ key_k) / 2^32 (top 24 bits), with
key_k = hash32(seed ^ hash32(k)). All arithmetic is on uint32 values kept in int64 tensors, so a
Triton kernel using uint32 wrap-around reproduces it bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, overload

import torch

MASK32 = 0xFFFFFFFF
# Odd multipliers below 2**31 so products of uint32 values stay exact in int64.
HASH_MUL_1 = 0x7FEB352D
HASH_MUL_2 = 0x68E31DA5
# Rows evaluated per chunk: bounds activation memory at (chunk, hidden) floats.
MAX_ROWS_PER_CHUNK = 1 << 18


class INRWeights(NamedTuple):
    """Parameters of all heads, stacked on a leading head axis (Hd heads, L residual layers)."""

    w_in: torch.Tensor  # (Hd, E, H), E = D * (1 + 2F)
    b_in: torch.Tensor  # (Hd, H)
    w_hidden: torch.Tensor  # (Hd, L, H, H)
    b_hidden: torch.Tensor  # (Hd, L, H)
    res_scale: torch.Tensor  # (Hd, L)
    w_out: torch.Tensor  # (Hd, H, O)
    b_out: torch.Tensor  # (Hd, O)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> INRWeights:
        """The same weights with ``fn`` applied to every tensor (a device move, a cast)."""
        return INRWeights(*(fn(t) for t in self))


@overload
def hash32(x: torch.Tensor) -> torch.Tensor: ...
@overload
def hash32(x: int) -> int: ...
def hash32(x: torch.Tensor | int) -> torch.Tensor | int:
    """Integer finaliser (lowbias32 shape) on uint32 values held in an int64 tensor (or a Python int)."""
    x = x ^ (x >> 16)
    x = (x * HASH_MUL_1) & MASK32
    x = x ^ (x >> 15)
    x = (x * HASH_MUL_2) & MASK32
    return x ^ (x >> 16)


def sample_key(seed: int, k: int) -> int:
    """Per-sample stream key; a Python int in [0, 2^32), computed on the host (no tensor, no sync)."""
    return int(hash32((seed & MASK32) ^ hash32(k & MASK32)))


def counter_hashes(n_rows: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(n_rows, dim) hash32(n * D + d): the first hash round, shared by all samples."""
    return hash32(torch.arange(n_rows * dim, dtype=torch.int64, device=device)).view(n_rows, dim)


def uniform_noise(key: int, hashed: torch.Tensor) -> torch.Tensor:
    """The noise stream of one sample, in [0, 1), shaped like ``hashed`` (``counter_hashes``)."""
    bits = hash32(hashed ^ key)
    return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))


def jittered(coords: torch.Tensor, jitter: torch.Tensor, key: int, hashed: torch.Tensor) -> torch.Tensor:
    """One noisy sample of the coordinates: coords + (u - 0.5) * jitter, u the stream of ``key``."""
    return coords + (uniform_noise(key, hashed) - 0.5) * jitter


def encode(v: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """Sinusoidal encoding (..., D) -> (..., D * (1 + 2F)), frequency-major then dim then sin/cos."""
    freqs = (2.0 ** torch.arange(num_freqs, dtype=v.dtype, device=v.device)) * math.pi  # (F,)
    angles = v[..., None, :] * freqs[:, None]  # (..., F, D)
    sincos = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1)  # (..., F, D, 2)
    return torch.cat((v, sincos.flatten(-3)), dim=-1)


def head_mlp(e: torch.Tensor, w: INRWeights, h: int) -> torch.Tensor:
    """One head's MLP on encoded rows (R, E) -> (R, O).

    Bias adds ride in ``addmm`` and the residual update is one ``addcmul``: at CPU sizes the
    elementwise passes over (R, H) cost as much as the matmuls, so fewer passes is faster.
    """
    x = torch.addmm(w.b_in[h], e, w.w_in[h]).relu_()
    for layer in range(w.w_hidden.shape[1]):
        branch = torch.addmm(w.b_hidden[h, layer], x, w.w_hidden[h, layer]).relu_()
        x = torch.addcmul(x, w.res_scale[h, layer], branch)
    return torch.addmm(w.b_out[h], x, w.w_out[h])


def inr_mean_reference(
    coords: torch.Tensor,  # (N, D) float32, clean coordinates
    jitter: torch.Tensor,  # (N, D) float32, noise amplitude per component (0 = no noise)
    out_scale: torch.Tensor,  # (N,) float32, multiplies every output of the row
    head_offsets: list[int],  # (Hd + 1) row boundaries, rows grouped by head
    weights: INRWeights,
    num_freqs: int,
    samples: int = 1,
    seed: int = 0,
    clean_first: bool = True,
) -> torch.Tensor:
    """Mean over ``samples`` noisy evaluations of the heads: (N, O) float32. Differentiable."""
    n_rows, dim = coords.shape
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if len(head_offsets) != weights.w_in.shape[0] + 1 or head_offsets[-1] != n_rows:
        raise ValueError(f"head_offsets {head_offsets} do not cover {n_rows} rows")
    # Every sample's coordinates, stacked: (K, N, D).
    batch = []
    hashed = counter_hashes(n_rows, dim, coords.device) if samples > int(clean_first) else None
    for k in range(samples):
        if k == 0 and clean_first:
            batch.append(coords)
        else:
            assert hashed is not None  # made above whenever a sample is jittered
            batch.append(jittered(coords, jitter, sample_key(seed, k), hashed))
    v = torch.stack(batch)
    outs = []
    for h in range(len(head_offsets) - 1):
        lo, hi = head_offsets[h], head_offsets[h + 1]
        if hi == lo:
            continue
        rows = v[:, lo:hi].reshape(-1, dim)  # (K * R, D)
        per_chunk = max(1, MAX_ROWS_PER_CHUNK // (hi - lo)) * (hi - lo)
        y = torch.cat([head_mlp(encode(c, num_freqs), weights, h) for c in torch.split(rows, per_chunk)])
        outs.append(y.view(samples, hi - lo, -1).mean(0) * out_scale[lo:hi, None])
    return torch.cat(outs)  # heads cover the rows in order, so this is (N, O)
