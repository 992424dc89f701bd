"""Generate the folded state_dict of a requested width from a checkpoint."""

from __future__ import annotations

import torch

from kernels.dispatch import evaluate_mean
from service.archs import tensor_specs
from service.constants import DEFAULT_KERNEL_PRECISION, MAX_SAMPLES
from service.errors import InvalidParameter, WidthOutOfRange
from service.hypernet.checkpoint import Checkpoint
from service.hypernet.coords import CoordTable, coord_table, scatter


def table_for(ckpt: Checkpoint, width: int) -> CoordTable:
    m = ckpt.manifest
    return coord_table(m.scope.value, width, m.in_channels, m.num_classes, m.inr.norm, m.inr.noise)


def check_request(ckpt: Checkpoint, width: int, samples: int | None) -> int:
    """Validate width and K against the checkpoint; returns the K to use."""
    check_width(ckpt, width)
    return resolve_samples(ckpt, samples)


def check_width(ckpt: Checkpoint, width: int) -> None:
    """``WidthOutOfRange`` naming the allowed range, unless ``width`` is an allowed integer."""
    allowed = ckpt.manifest.widths_allowed
    if isinstance(width, bool) or not isinstance(width, int) or width not in allowed:
        raise WidthOutOfRange(
            f"width {width} is outside {ckpt.manifest.arch}'s allowed range {allowed.min}..{allowed.max}"
        )


def resolve_samples(ckpt: Checkpoint, requested: int | None, max_samples: int = MAX_SAMPLES) -> int:
    """K to use: the manifest's default when not requested; ``max_samples`` (a service setting,
    at most ``MAX_SAMPLES``) bounds it. An INR trained without coordinate noise makes every sample
    the clean one, so any valid K collapses to 1: the same network at 1/K of the cost, under one
    cache key, and exactly (not to rounding) the K=1 bytes."""
    k = ckpt.manifest.default_samples if requested is None else requested
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_samples:
        raise InvalidParameter(f"samples must be an integer in 1..{max_samples}, got {requested}")
    return 1 if ckpt.manifest.inr.noise == 0 else k


def sample_seed(width: int) -> int:
    """Noise seed of a width: fixed, so a request always yields the same bytes on a backend."""
    return 0x5EED0000 + width


def generated_tensors(
    ckpt: Checkpoint, width: int, samples: int, backend: str = "auto",
    precision: str = DEFAULT_KERNEL_PRECISION,
) -> dict[str, torch.Tensor]:
    """The INR's tensors at ``width`` as the mean of exactly ``samples`` evaluations (no request
    checks, no K collapse: ``generate`` validates first). ``evaluate_mean`` resolves ``backend``."""
    table = table_for(ckpt, width)
    out = evaluate_mean(
        backend, table.coords, table.jitter, table.out_scale,
        ckpt.hypernet.head_offsets(table), ckpt.hypernet.weights(table), ckpt.manifest.inr.num_freqs,
        samples=samples, seed=sample_seed(width), precision=precision,
    )
    return scatter(table, out)


def generate(
    ckpt: Checkpoint,
    width: int,
    samples: int | None = None,
    backend: str = "auto",
    precision: str = DEFAULT_KERNEL_PRECISION,
) -> dict[str, torch.Tensor]:
    """Folded state_dict (float32, CPU, state_dict order) of the network at ``width``."""
    return folded_state(ckpt, width, check_request(ckpt, width, samples), backend, precision)


def folded_state(
    ckpt: Checkpoint, width: int, samples: int, backend: str, precision: str = DEFAULT_KERNEL_PRECISION,
) -> dict[str, torch.Tensor]:
    """``generate`` for a request already checked (service.serving.request): exactly ``samples``."""
    generated = generated_tensors(ckpt, width, samples, backend, precision)
    m = ckpt.manifest
    specs = tensor_specs(m.scope, width, m.in_channels, m.num_classes)
    return {s.name: generated[s.name] if s.role else ckpt.fixed[s.name] for s in specs}
