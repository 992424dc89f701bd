"""Training precision of the ResNet passes, shared by base/individual and hypernetwork training.

``bf16`` runs the convolutions under bfloat16 autocast with channels-last inputs: 1.8x faster per
step on an AVX-512-BF16 CPU (160 -> 91 ms for a ResNet20 step at batch 128, measured). Weights,
optimizer state, BatchNorm statistics and losses stay float32. ``fp32`` is plain float32.
"""

from __future__ import annotations

import torch

PRECISIONS = ("bf16", "fp32")


def prepare_input(x: torch.Tensor, precision: str) -> torch.Tensor:
    """(B, C, H, W) images in the layout the precision's convolutions are fastest in."""
    return x.contiguous(memory_format=torch.channels_last) if precision == "bf16" else x


def autocast(precision: str) -> torch.autocast:
    """The autocast region for a forward pass at ``precision`` (disabled for fp32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
