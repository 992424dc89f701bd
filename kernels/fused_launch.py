"""Launch shapes of the fused INR kernel (``kernels.fused_inr``): the heuristic candidates, the one
each kernel specialisation compiled with on each device (remembered per process, so a served width
does not retry shapes that failed), and a report of it for benchmarks (``path_taken``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from kernels.fused_pack import next_pow2
from service.constants import MAX_FUSED_HIDDEN


class LaunchShape(NamedTuple):
    block_m: int
    num_warps: int
    num_stages: int
    reload: bool = False  # re-read the weights every sample (RELOAD): less shared memory, more L2 reads


class KernelSpec(NamedTuple):
    """What makes a compiled kernel: its constexprs, precision and device."""

    da: int
    f_pad: int
    hp: int
    op: int
    layers: int
    clean_first: bool
    precision: str
    device: str
    # samples == 1 is its own specialisation (Triton folds the K loop away, and with it the weights
    # held across samples), so a shape that fits at K = 1 says nothing about K > 1 and vice versa.
    single_sample: bool


# The shape that compiled per specialisation, or None where none did (evaluated layer by layer);
# failures are not retried. The newest decision is last (path_taken reports it).
DECIDED: dict[KernelSpec, LaunchShape | None] = {}


def candidates(hp: int, max_rows: int, interpreting: bool) -> list[LaunchShape]:
    """Heuristic launch shapes, best first; the next is tried if one exceeds the chip's resources."""
    if interpreting:
        # The interpreter's cost is per program and per op, not per element: one big tile per
        # head (up to 1024 rows) keeps the CPU tests fast.
        return [LaunchShape(min(1024, next_pow2(max_rows, 16)), 4, 1)]
    # Shapes checked by compiling for sm_90 (python -m kernels.bench --compile-report 64,128,256):
    # the weights do not depend on the sample, so the compiler keeps a head's weights in shared
    # memory across the K loop and a second pipeline stage buys nothing but spills.
    if hp <= 64:
        held = [LaunchShape(64, 4, 1)]  # one warpgroup, 64-row wgmma tiles: no spills in tf32/bf16
    elif hp <= 128:
        # (128, 128) fp32 activation + accumulator = 128 regs/thread at 8 warps, no spills;
        # tf32 weights take 208 KiB of Hopper's 227 (64 rows: 176 KiB, a few spills).
        held = [LaunchShape(128, 8, 1), LaunchShape(64, 4, 1)]
    else:
        # HP = 256: two (64, 128) halves at 8 warps. Fewer rows (32) would leave the tensor cores
        # (wgmma needs 64 per warpgroup) for the FMA path: per-layer cuBLAS is faster than that.
        held = [LaunchShape(64, 8, 1)]
    # Then the same shapes re-reading the weights every sample, before giving up on fusion.
    return held + [launch._replace(reload=True) for launch in held]


def remember(spec: KernelSpec, launch: LaunchShape | None) -> None:
    DECIDED.pop(spec, None)  # re-insert: the newest decision is last
    DECIDED[spec] = launch


def path_taken(hidden: int, precision: str, device: torch.device | str) -> str:
    """How earlier calls in this process evaluated this hidden size and precision (for reports)."""
    from kernels.fused_inr import interpreting

    if hidden > MAX_FUSED_HIDDEN:
        return "per-layer (H > fused limit)"
    hp = next_pow2(hidden, 16)
    seen = [launch for spec, launch in DECIDED.items()
            if spec.hp == hp and spec.precision == precision and spec.device == str(torch.device(device))]
    if not seen:
        return "fused" if interpreting() else "not run"
    if seen[-1] is None:
        return "per-layer (fused does not fit)"
    reload = ", weights re-read per sample" if seen[-1].reload else ""
    return f"fused, BLOCK_M {seen[-1].block_m}, {seen[-1].num_warps} warps{reload}"
