"""What a requested ``width`` means for each block, and what the resulting network costs.

``width`` is the inner channel count on the scale of stage 3 (full width 64). The *morph scope*
decides which blocks follow it:
- ``last``: only ``layer3.2`` morphs, its inner width is ``width`` (the paper's protocol);
- ``all``: every block morphs; a block in a stage of base width B gets ``max(1, round(B*width/64))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.archs.resnet20 import (
    BLOCKS_PER_STAGE,
    FULL_WIDTH,
    NUM_BLOCKS,
    STAGE_WIDTHS,
    block_io,
    block_names,
)


class Scope(StrEnum):
    LAST = "last"
    ALL = "all"


def morphed_blocks(scope: Scope | str) -> list[int]:
    """Indices (0..8) of the blocks whose inner width follows the requested width."""
    return [NUM_BLOCKS - 1] if Scope(scope) is Scope.LAST else list(range(NUM_BLOCKS))


def inner_widths(scope: Scope | str, width: int) -> list[int]:
    """Per-block inner widths of the network requested at ``width``."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    widths = [block_io(i)[1] for i in range(NUM_BLOCKS)]
    for i in morphed_blocks(scope):
        base = STAGE_WIDTHS[i // BLOCKS_PER_STAGE]
        widths[i] = width if Scope(scope) is Scope.LAST else max(1, round(base * width / FULL_WIDTH))
    return widths


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the folded network: its name, shape and, if generated, its role."""

    name: str
    shape: tuple[int, ...]
    role: str | None  # one of ROLES when the hypernetwork generates it, else None (fixed)
    block: int | None  # block index 0..8 for block tensors


ROLES = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")


def tensor_specs(
    scope: Scope | str, width: int, in_channels: int, num_classes: int
) -> list[TensorSpec]:
    """Every tensor of the folded network at ``width``, in state_dict order."""
    inner = inner_widths(scope, width)
    morphed = set(morphed_blocks(scope))
    specs = [
        TensorSpec("conv1.weight", (STAGE_WIDTHS[0], in_channels, 3, 3), None, None),
        TensorSpec("conv1.bias", (STAGE_WIDTHS[0],), None, None),
    ]
    for i, name in enumerate(block_names()):
        cin, cout, stride = block_io(i)
        h = inner[i]
        shapes = {
            "conv1.weight": (h, cin, 3, 3),
            "conv1.bias": (h,),
            "conv2.weight": (cout, h, 3, 3),
            "conv2.bias": (cout,),
        }
        for role in ROLES:
            specs.append(TensorSpec(f"{name}.{role}", shapes[role], role if i in morphed else None, i))
        if stride != 1 or cin != cout:
            specs.append(TensorSpec(f"{name}.shortcut.weight", (cout, cin, 1, 1), None, i))
            specs.append(TensorSpec(f"{name}.shortcut.bias", (cout,), None, i))
    specs.append(TensorSpec("fc.weight", (num_classes, STAGE_WIDTHS[-1]), None, None))
    specs.append(TensorSpec("fc.bias", (num_classes,), None, None))
    return specs


def param_count(scope: Scope | str, width: int, in_channels: int, num_classes: int) -> int:
    """Parameters of the folded network at ``width`` (BN folded, so no BN parameters)."""
    total = 0
    for spec in tensor_specs(scope, width, in_channels, num_classes):
        n = 1
        for d in spec.shape:
            n *= d
        total += n
    return total


def compression_ratio(scope: Scope | str, width: int, in_channels: int, num_classes: int) -> float:
    """1 - params(width) / params(full width), over the whole network."""
    full = param_count(scope, FULL_WIDTH, in_channels, num_classes)
    return 1.0 - param_count(scope, width, in_channels, num_classes) / full
