"""Triton kernel: the whole hypernetwork over a coordinate table in one fused launch.

Same math and signature as ``kernels.reference.inr_mean_reference`` (read its docstring first):
for every row, K noisy copies of the coordinate are encoded on the fly, run through the row's
head (input layer, residual layers, output layer) with the activations kept on-chip, and the
K outputs are averaged in registers; each output row is written once.

Layout decisions (all done by the launcher, so the kernel sees only powers of two):
- One launch covers all heads. A tile schedule maps program -> (head, first row, stop row), so a
  program handles up to BLOCK_M rows of exactly one head and loads only that head's weights.
- The encoding is never materialised. With D coordinate features padded to DA (zeros), the
  kernel builds angles (BLOCK_M, F_PAD, DA) -> sin and cos tiles (BLOCK_M, F_PAD * DA) and a
  zero-interleaved copy of v (BLOCK_M, 2 * DA); ``w_in`` is re-laid out into three row blocks
  (identity, sin, cos) in that order, with zero rows for every padding slot.
- Hidden size H is zero-padded to HP = next power of two (>= 16). Zero-padded weights and biases
  are exact for this ReLU MLP: a padded unit is relu(0) = 0 in every layer and feeds nothing.
  HP <= 128 keeps the activation as one register tile; HP = 256 keeps it as two halves (dots
  of at most 128 x 128). Fused limit: MAX_FUSED_HIDDEN = 256. Above it the launcher evaluates
  layer by layer with the PyTorch reference on the same device (cuBLAS matmuls, activations
  through device memory), and so it does when a fused launch does not fit the device's shared
  memory at any heuristic shape. The weights do not depend on the sample, so the compiler keeps
  a head's weights in shared memory across the K loop; compiled ahead of time for sm_90 (not
  run), that fits 227 KiB for HP <= 64 in every precision, HP = 128 in tf32 and bf16, HP = 256
  in bf16 only (see docs/BENCHMARKS.md). Where it does not fit, the launcher retries with
  RELOAD: the weight addresses depend on the sample, so they are re-read (from L2) every sample
  and only one dot's operands are live at a time (fp32 at HP = 128: 288 -> 128 KiB).
- Output width O is zero-padded to OP >= 16 columns; only the first O are stored.

Noise is the reference's counter-based hash on uint32 with wrap-around; per-sample keys come
from ``reference.sample_key`` on the host (K <= 100 ints), so both backends draw the same noise.

Only ``tl`` builtins are used (no ``tl.zeros``-style library functions): those are themselves
jitted when triton is first imported, so a process that imported triton before setting
TRITON_INTERPRET could not interpret them.

Precision: accumulation is always fp32. ``precision`` picks the dot inputs: "fp32" (3xTF32 on
the tensor cores, see _KERNEL_PRECISION), "tf32", or "bf16" (weights pre-cast once, activations
cast per dot). In interpreter mode (TRITON_INTERPRET=1, CPU tests) every variant runs as fp32:
the interpreter's numpy dot ignores tf32 and gives wrong numbers for bf16. Block sizes are
heuristics (``kernels.fused_launch``), not ``@triton.autotune``: autotune does not work in the
interpreter, and a timing-dependent pick could change the last bits of a generated model between
replicas, breaking the byte-identical-output contract.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from typing import Any

import torch
import triton
import triton.language as tl

from kernels import fused_launch
from kernels.fused_pack import packed
from kernels.reference import INRWeights, inr_mean_reference, sample_key
from service.constants import KERNEL_PRECISIONS, MAX_FUSED_HIDDEN, MAX_SAMPLES

log = logging.getLogger(__name__)

# tl.dot mode per precision on a GPU. "fp32" uses 3xTF32 on the tensor cores (operands split
# into tf32 head + tail, three MMAs, ~fp32 accuracy): the IEEE fp32 dot runs on the FMA path,
# which at these tiles spills badly (sm_90 compile, HP = 128: 13.8 KB stack frame per thread).
_KERNEL_PRECISION = {"fp32": "tf32x3", "tf32": "tf32", "bf16": "bf16"}


@triton.jit
def _hash32(x):
    """lowbias32-shaped finaliser on uint32 (wrap-around multiply), as ``reference.hash32``."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x68E31DA5
    return x ^ (x >> 16)


@triton.jit
def _reduce_angle(a):
    """a - 2 pi round(a / 2 pi), to ~1e-7 for |a| < 2^11 * 2 pi (Cody-Waite, 2 pi in three parts).

    Same sin/cos values as the reference's, but the argument handed to tl.sin/tl.cos stays in
    [-pi, pi], where a fast hardware approximation (if the backend picks one) is accurate to
    ~1e-6; unreduced angles reach 2^(F-1) pi * |v|, a few thousand radians.
    """
    n = tl.floor(a * 0.15915494309189535 + 0.5)  # round(a / 2 pi)
    a = a - n * 6.28125  # 8-bit head of 2 pi: n * head is exact for |n| < 2^16
    a = a - n * 0.0019354820251464844  # next 12 bits: exact for |n| < 2^12
    return a - n * -1.7484555314695172e-07  # fp32 tail


@triton.jit
def _dot(a, w_ptr, row0, col0, ld, K: tl.constexpr, N: tl.constexpr, PREC: tl.constexpr):
    """a (BM, K) @ W[row0:row0+K, col0:col0+N] of a row-major matrix with ``ld`` columns."""
    rk = tl.arange(0, K)
    cn = tl.arange(0, N)
    w = tl.load(w_ptr + (row0 + rk)[:, None] * ld + (col0 + cn)[None, :])
    # One return after an if/elif chain: the compiler would also type-check code after a return.
    if PREC == "bf16":  # weights are stored in bf16 already; fp32 accumulation
        out = tl.dot(a.to(tl.bfloat16), w, out_dtype=tl.float32)
    elif PREC == "tf32":
        out = tl.dot(a, w, input_precision="tf32")
    elif PREC == "tf32x3":
        out = tl.dot(a, w, input_precision="tf32x3")
    else:
        out = tl.dot(a, w, input_precision="ieee")
    return out


@triton.jit(do_not_specialize=["sample_stride"])  # a known 0 would be folded away (see RELOAD)
def _fused_inr_kernel(
    coords_ptr, jitter_ptr, scale_ptr, out_ptr,  # (N, D), (N, D), (N,), (N, O)
    tile_head_ptr, tile_start_ptr, tile_stop_ptr, keys_ptr, freq_ptr,  # schedule, (K,), (F_PAD,)
    wv_ptr, ws_ptr, wc_ptr, b_in_ptr,  # (Hd, 2DA, HP), (Hd, F_PAD*DA, HP) x2, (Hd, HP)
    wh_ptr, bh_ptr, rs_ptr, wo_ptr, bo_ptr,  # (Hd, L, HP, HP), (Hd, L, HP), (Hd, L), (Hd, HP, OP), (Hd, OP)
    samples, D, O, sample_stride,  # noqa: E741 (the (N, D) -> (N, O) shape names); sample_stride: always 0
    L: tl.constexpr, CLEAN_FIRST: tl.constexpr, BLOCK_M: tl.constexpr, DA: tl.constexpr,
    F_PAD: tl.constexpr, HP: tl.constexpr, OP: tl.constexpr, SPLIT: tl.constexpr, PREC: tl.constexpr,
    RELOAD: tl.constexpr,
):
    pid = tl.program_id(0)
    head = tl.load(tile_head_ptr + pid)
    start = tl.load(tile_start_ptr + pid)
    stop = tl.load(tile_stop_ptr + pid)
    HS: tl.constexpr = HP // 2 if SPLIT else HP  # width of one activation register tile
    FD: tl.constexpr = F_PAD * DA

    rows = start + tl.arange(0, BLOCK_M)  # (BM,)
    dims = tl.arange(0, DA)  # (DA,)
    row_ok = rows < stop
    in_mask = row_ok[:, None] & (dims < D)[None, :]
    offs = rows[:, None] * D + dims[None, :]  # (BM, DA), also the noise counter n * D + d
    c = tl.load(coords_ptr + offs, mask=in_mask, other=0.0)
    jit = tl.load(jitter_ptr + offs, mask=in_mask, other=0.0)
    # The first hash round does not depend on the sample: hoisted out of the K loop.
    h0 = _hash32(offs.to(tl.uint32))
    freq = tl.load(freq_ptr + tl.arange(0, F_PAD))  # 2^f * pi in fp32, exactly as the reference

    # Per-head weight bases (row-major blocks, see kernels.fused_pack.pack for the layouts).
    wv = wv_ptr + head * (2 * DA * HP)
    ws = ws_ptr + head * (FD * HP)
    wc = wc_ptr + head * (FD * HP)
    wo = wo_ptr + head * (HP * OP)
    cols = tl.arange(0, HS)
    b_in0 = tl.load(b_in_ptr + head * HP + cols)
    if SPLIT:
        b_in1 = tl.load(b_in_ptr + head * HP + HS + cols)

    acc = tl.full((BLOCK_M, OP), 0.0, tl.float32)
    for k in range(samples):
        # RELOAD: offset the weight addresses by k * sample_stride (a runtime 0), so they depend on
        # the sample and the compiler re-reads them (from L2) each sample instead of holding all of
        # the head's weights in shared memory across the loop: what lets fp32 at K > 1 fit sm_90.
        kw = k * sample_stride if RELOAD else 0
        key = tl.load(keys_ptr + k).to(tl.uint32, bitcast=True)
        bits = _hash32(h0 ^ key)
        u = (bits >> 8).to(tl.float32) * (1.0 / 16777216.0)
        v = c + (u - 0.5) * jit
        if CLEAN_FIRST:
            v = tl.where(k == 0, c, v)
        # Encoding tiles: identity (zero-interleaved to reach the 16-wide minimum of tl.dot),
        # then sin and cos of angles (BM, F_PAD, DA) flattened frequency-major.
        ident = tl.reshape(tl.join(v, v * 0.0), (BLOCK_M, 2 * DA))
        ang = tl.reshape(v[:, None, :] * freq[None, :, None], (BLOCK_M, FD))  # as rounded by the reference
        ang = _reduce_angle(ang)
        sin_e = tl.sin(ang)
        cos_e = tl.cos(ang)
        x0 = _dot(ident, wv + kw, 0, 0, HP, 2 * DA, HS, PREC)
        x0 += _dot(sin_e, ws + kw, 0, 0, HP, FD, HS, PREC)
        x0 += _dot(cos_e, wc + kw, 0, 0, HP, FD, HS, PREC)
        x0 += b_in0[None, :]
        x0 = tl.maximum(x0, 0.0)
        if SPLIT:
            x1 = _dot(ident, wv + kw, 0, HS, HP, 2 * DA, HS, PREC)
            x1 += _dot(sin_e, ws + kw, 0, HS, HP, FD, HS, PREC)
            x1 += _dot(cos_e, wc + kw, 0, HS, HP, FD, HS, PREC)
            x1 += b_in1[None, :]
            x1 = tl.maximum(x1, 0.0)
        for layer in range(L):
            hl = head * L + layer
            w = wh_ptr + hl * (HP * HP) + kw
            res = tl.load(rs_ptr + hl)
            y0 = _dot(x0, w, 0, 0, HP, HS, HS, PREC)
            if SPLIT:
                y0 += _dot(x1, w, HS, 0, HP, HS, HS, PREC)
                y1 = _dot(x0, w, 0, HS, HP, HS, HS, PREC) + _dot(x1, w, HS, HS, HP, HS, HS, PREC)
                b1 = tl.load(bh_ptr + hl * HP + HS + cols)
                x1 = x1 + res * tl.maximum(y1 + b1[None, :], 0.0)
            b0 = tl.load(bh_ptr + hl * HP + cols)
            x0 = x0 + res * tl.maximum(y0 + b0[None, :], 0.0)
        acc += _dot(x0, wo + kw, 0, 0, OP, HS, OP, PREC)
        if SPLIT:
            acc += _dot(x1, wo + kw, HS, 0, OP, HS, OP, PREC)

    # mean_k (z_k + b) = mean_k z_k + b: the bias is added once, after the mean.
    ocols = tl.arange(0, OP)
    b_out = tl.load(bo_ptr + head * OP + ocols)
    scale = tl.load(scale_ptr + rows, mask=row_ok, other=0.0)
    y = (acc / samples + b_out[None, :]) * scale[:, None]
    out_mask = row_ok[:, None] & (ocols < O)[None, :]
    tl.store(out_ptr + rows[:, None] * O + ocols[None, :], y, mask=out_mask)


def interpreting() -> bool:
    """Whether launches run in Triton's interpreter (TRITON_INTERPRET=1: the CPU tests and CI)."""
    return not isinstance(_fused_inr_kernel, triton.runtime.JITFunction)


# Triton's interpreter swaps triton.language's builtins for its own during a launch, process-wide,
# so two launches from generation worker threads break each other ("Did you forget to add
# @triton.jit?"). Interpreted launches (CPU: tests, CI) take turns; compiled ones run concurrently.
_INTERPRETER_LOCK = threading.Lock()


def _launch_guard() -> contextlib.AbstractContextManager[object]:
    return _INTERPRETER_LOCK if interpreting() else contextlib.nullcontext()


def fused_inr_mean(
    coords: torch.Tensor,  # (N, D) float32
    jitter: torch.Tensor,  # (N, D) float32
    out_scale: torch.Tensor,  # (N,) float32
    head_offsets: list[int],  # (Hd + 1,) row boundaries, rows grouped by head
    weights: INRWeights,
    num_freqs: int,
    samples: int = 1,
    seed: int = 0,
    clean_first: bool = True,
    precision: str = "fp32",
) -> torch.Tensor:
    """Mean over ``samples`` noisy evaluations, (N, O) float32, like ``inr_mean_reference``.

    Hidden sizes up to MAX_FUSED_HIDDEN (256) run fused where the launch fits the device (see
    the module docstring); the rest run layer by layer through the PyTorch reference on the same
    device. Not differentiable (generation only).
    """
    if precision not in KERNEL_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(KERNEL_PRECISIONS)}, got {precision!r}")
    if not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be in 1..{MAX_SAMPLES}, got {samples}")
    n_rows, dim = coords.shape
    n_heads, _, hidden = weights.w_in.shape
    if len(head_offsets) != n_heads + 1 or head_offsets[0] != 0 or head_offsets[-1] != n_rows:
        raise ValueError(f"head_offsets {head_offsets} do not cover {n_rows} rows")
    if any(b < a for a, b in itertools.pairwise(head_offsets)):
        raise ValueError(f"head_offsets {head_offsets} are not sorted")
    if jitter.shape != coords.shape or out_scale.shape != (n_rows,):
        raise ValueError(f"jitter {tuple(jitter.shape)} / out_scale {tuple(out_scale.shape)} do not match coords")
    if hidden > MAX_FUSED_HIDDEN:
        args = (coords, jitter, out_scale, head_offsets, weights, num_freqs, samples, seed, clean_first)
        return _per_layer(args, precision)
    if interpreting():
        precision = "fp32"  # see the module docstring: tf32/bf16 are not emulated by the interpreter
    kernel_prec = "ieee" if interpreting() else _KERNEL_PRECISION[precision]
    out_dim = weights.w_out.shape[2]
    out = torch.empty(n_rows, out_dim, device=coords.device, dtype=torch.float32)
    if n_rows == 0:
        return out
    p = packed(weights, dim, num_freqs, precision)
    layers = weights.w_hidden.shape[1]
    spec = fused_launch.KernelSpec(p.da, p.f_pad, p.hp, p.op, layers, clean_first, precision, str(coords.device),
                                   single_sample=samples == 1)
    max_rows = max(b - a for a, b in itertools.pairwise(head_offsets))
    # (The interpreter's one candidate depends on the row count: nothing to remember there.)
    known = spec in fused_launch.DECIDED and not interpreting()
    candidates = [fused_launch.DECIDED[spec]] if known else fused_launch.candidates(p.hp, max_rows, interpreting())
    # uint32 keys carried as int32 bit patterns; the kernel bitcasts them back.
    keys = [key - (1 << 32) if key >= 1 << 31 else key for key in (sample_key(seed, k) for k in range(samples))]
    keys_t = torch.tensor(keys, dtype=torch.int32).to(coords.device)
    tensors = (coords.float().contiguous(), jitter.float().contiguous(), out_scale.float().contiguous())
    for launch in candidates:
        if launch is None:
            break
        # Tile schedule: each program gets BLOCK_M rows of one head (heads in table order).
        sched = [(h, s, hi) for h, (lo, hi) in enumerate(itertools.pairwise(head_offsets))
                 for s in range(lo, hi, launch.block_m)]
        sched_t = torch.tensor(sched, dtype=torch.int32).T.contiguous().to(coords.device)
        try:
            with _launch_guard():
                _fused_inr_kernel[(len(sched),)](
                    *tensors, out, sched_t[0], sched_t[1], sched_t[2], keys_t, p.freq,
                    p.wv, p.ws, p.wc, p.b_in,
                    p.wh, p.bh, p.rs, p.wo, p.bo,
                    samples, dim, out_dim, 0,
                    L=layers, CLEAN_FIRST=clean_first, BLOCK_M=launch.block_m, DA=p.da, F_PAD=p.f_pad,
                    HP=p.hp, OP=p.op, SPLIT=p.hp > 128, PREC=kernel_prec, RELOAD=launch.reload,
                    num_warps=launch.num_warps, num_stages=launch.num_stages,
                )
        except triton.runtime.OutOfResources as exc:
            log.info("fused INR launch %s does not fit (%s); trying a smaller one", launch, exc)
            continue
        fused_launch.remember(spec, launch)
        return out
    if fused_launch.DECIDED.get(spec, 0) is not None:
        log.warning("fused INR kernel does not fit this device for %s; evaluating layer by layer", spec)
    fused_launch.remember(spec, None)
    inputs = (coords, jitter, out_scale, head_offsets, weights, num_freqs, samples, seed, clean_first)
    return _per_layer(inputs, precision)


def _per_layer(args: tuple[Any, ...], precision: str) -> torch.Tensor:
    """The non-fused path: the PyTorch reference on the inputs' device, one matmul per layer.

    "bf16" runs its matmuls under CUDA autocast (bf16 inputs, fp32 accumulation; autocast is
    thread-local, so concurrent generations are unaffected). "tf32" runs as fp32 here: PyTorch's
    tf32 switch is process-wide and would leak into other threads.
    """
    cuda = args[0].device.type == "cuda"
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=cuda and precision == "bf16"):
        return inr_mean_reference(*args).float()
