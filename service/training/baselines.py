"""Width baselines that reuse the full model without retraining: channel slicing and L1 pruning.

Both build a folded state_dict of the same shapes a generated network has at ``width``:
- channel slicing (US-Net style): keep the *first* h inner channels of every morphed block, i.e.
  the leading slice of each tensor along every axis that shrank;
- L1-magnitude pruning (no fine-tuning): keep the h inner channels whose conv1 filters have the
  largest L1 norm, in their original order.
Outer channels never change, so only conv1's output and conv2's input axes are cut.
"""

from __future__ import annotations

import torch

from service.archs import Scope, block_names, inner_widths, morphed_blocks, tensor_specs


def leading_slice(full: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The first ``shape[d]`` entries of ``full`` along every axis d (a copy)."""
    if full.dim() != len(shape) or any(s > f for s, f in zip(shape, full.shape, strict=True)):
        raise ValueError(f"cannot slice {tuple(full.shape)} down to {tuple(shape)}")
    return full[tuple(slice(0, s) for s in shape)].contiguous()


def sliced_state(
    base: dict[str, torch.Tensor], scope: Scope | str, width: int, in_channels: int, num_classes: int
) -> dict[str, torch.Tensor]:
    """Channel slicing of the full folded model at ``width`` (state_dict order)."""
    return {s.name: leading_slice(base[s.name], s.shape) for s in tensor_specs(scope, width, in_channels, num_classes)}


def l1_keep_indices(conv1_weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` output filters with the largest L1 norm, ascending."""
    norms = conv1_weight.abs().flatten(1).sum(1)  # (inner,)
    return torch.topk(norms, keep).indices.sort().values


def l1_pruned_state(
    base: dict[str, torch.Tensor], scope: Scope | str, width: int, in_channels: int, num_classes: int
) -> dict[str, torch.Tensor]:
    """L1-magnitude pruning of each morphed block's inner channels, without fine-tuning."""
    state = {k: v.clone() for k, v in base.items()}
    names = block_names()
    widths = inner_widths(scope, width)
    for i in morphed_blocks(scope):
        prefix = names[i]
        keep = l1_keep_indices(base[f"{prefix}.conv1.weight"], widths[i])
        state[f"{prefix}.conv1.weight"] = base[f"{prefix}.conv1.weight"][keep].contiguous()
        state[f"{prefix}.conv1.bias"] = base[f"{prefix}.conv1.bias"][keep].contiguous()
        state[f"{prefix}.conv2.weight"] = base[f"{prefix}.conv2.weight"][:, keep].contiguous()
    return {s.name: state[s.name] for s in tensor_specs(scope, width, in_channels, num_classes)}
