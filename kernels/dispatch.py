"""Pick the backend that evaluates the hypernetwork: Triton on CUDA, the PyTorch reference on CPU.

``backend="auto"`` chooses; ``"torch"`` or ``"triton"`` force one. Asking for Triton where it
cannot run is an error that says why, never a silent fallback.
"""

from __future__ import annotations

import os

import torch

from kernels.memo import TensorMemo
from kernels.reference import INRWeights, inr_mean_reference
from service.constants import BACKENDS, DEFAULT_KERNEL_PRECISION, KERNEL_PRECISIONS


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""


def triton_available() -> tuple[bool, str]:
    """(usable, reason): Triton needs a CUDA device, or TRITON_INTERPRET=1 for CPU testing."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False, "triton is not installed (pip install 'neumeta-serve[gpu]')"
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        return True, ""
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernel in interpreter mode)"


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if torch.cuda.is_available() and triton_available()[0] else "torch"
    if backend == "triton":
        ok, why = triton_available()
        if not ok:
            raise BackendUnavailable(f"backend 'triton' unavailable: {why}; use backend 'torch'")
    return backend


@torch.no_grad()
def evaluate_mean(
    backend: str,
    coords: torch.Tensor,
    jitter: torch.Tensor,
    out_scale: torch.Tensor,
    head_offsets: list[int],
    weights: INRWeights,
    num_freqs: int,
    samples: int,
    seed: int,
    precision: str = DEFAULT_KERNEL_PRECISION,
) -> torch.Tensor:
    """K-sample mean of the hypernetwork over a table, (N, O) float32 on the CPU."""
    if precision not in KERNEL_PRECISIONS:
        raise ValueError(f"unknown kernel precision {precision!r}; choose one of {', '.join(KERNEL_PRECISIONS)}")
    backend = resolve_backend(backend)
    if backend == "triton":
        from kernels.fused_inr import fused_inr_mean  # imported lazily: triton is optional

        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        w = weights.map(lambda t: on_device(t, device))
        out = fused_inr_mean(on_device(coords, device), on_device(jitter, device), on_device(out_scale, device),
                             head_offsets, w, num_freqs, samples, seed, precision=precision)
        return out.cpu()
    return inr_mean_reference(
        coords, jitter, out_scale, head_offsets, weights, num_freqs, samples=samples, seed=seed
    )


# Device copies of CPU tensors that outlive a request (checkpoint weights, cached coordinate
# tables), so a GPU generation does not re-upload ~1-8 MB of INR weights every call. One copy per
# source: a source moved to another device replaces its copy.
_DEVICE_COPIES: TensorMemo[torch.Tensor] = TensorMemo(per_source=1)


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``, reusing the copy made last time while ``t`` is unchanged."""
    if t.device == device:
        return t
    return _DEVICE_COPIES.get(t, device, lambda: t.detach().to(device))
