"""How many distinct inner channels a network's blocks really have.

A block's inner channel c is described by what it reads and what it writes: row c of conv1's
weight (cin*9 values) and column c of conv2's weight (cout*9 values). Each part is scaled to unit
norm over the block (so neither conv dominates) and the two are joined into the channel's
signature, a (h, (cin + cout) * 9) matrix per block. Two numbers summarise it:

- ``distinct``: the effective rank, the fewest singular directions holding ``energy`` (99%) of
  the signature matrix's energy. A block of h channels of which only r are really different has
  rank about r, however large h is.
- ``adjacent_cosine``: the mean cosine between neighbouring channels' signatures. Near 1 means the
  channel axis is a smooth curve sampled densely, so neighbours duplicate each other.

A generated network whose blocks have few distinct channels at full width computes much what its
narrow versions compute: the INR had to make one weight function serve every width it was trained
at, and a point sample of h channels only stands for the whole curve if the curve is smooth at
the scale of the narrowest width's channels.

    neumeta redundancy --checkpoint service/checkpoints/resnet20-fmnist-all.safetensors --width 64 \
        --reference runs/teacher-last-w64.safetensors
"""

from __future__ import annotations

from typing import Any

import torch

from service.archs import block_names

ENERGY = 0.99


def channel_signatures(state: dict[str, torch.Tensor], block: str) -> torch.Tensor:
    """(h, (cin + cout) * 9) float64: each inner channel's conv1 row and conv2 column."""
    reads = state[f"{block}.conv1.weight"].double()  # (h, cin, 3, 3)
    writes = state[f"{block}.conv2.weight"].double().transpose(0, 1)  # (h, cout, 3, 3)
    reads, writes = reads.flatten(1), writes.flatten(1)
    return torch.cat((reads / reads.norm().clamp_min(1e-12), writes / writes.norm().clamp_min(1e-12)), dim=1)


def effective_rank(matrix: torch.Tensor, energy: float = ENERGY) -> int:
    """Fewest singular values whose squares hold ``energy`` of the total (0 for an all-zero matrix)."""
    s2 = torch.linalg.svdvals(matrix).square()
    total = s2.sum()
    if total <= 0:
        return 0
    return int((s2.cumsum(0) / total < energy).sum()) + 1


def adjacent_cosine(rows: torch.Tensor) -> float | None:
    """Mean cosine similarity of consecutive rows; None with fewer than two rows."""
    if rows.shape[0] < 2:
        return None
    unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((unit[1:] * unit[:-1]).sum(dim=1).mean())


def block_redundancy(state: dict[str, torch.Tensor], energy: float = ENERGY) -> list[dict[str, Any]]:
    """One row per block of a folded ResNet20 state: inner width, distinct channels, neighbour cosine."""
    rows = []
    for block in block_names():
        sig = channel_signatures(state, block)
        rows.append({"block": block, "inner": sig.shape[0], "distinct": effective_rank(sig, energy),
                     "adjacent_cosine": adjacent_cosine(sig)})
    return rows


def redundancy_table(columns: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: one row per block, a (distinct / inner, neighbour cosine) pair per named network."""
    names = list(columns)
    lines = ["| block | " + " | ".join(f"{n}: distinct / inner | {n}: neighbour cos" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    blocks = [r["block"] for r in next(iter(columns.values()))]
    for i, block in enumerate(blocks):
        cells = []
        for n in names:
            r = columns[n][i]
            cos = "–" if r["adjacent_cosine"] is None else f"{r['adjacent_cosine']:.2f}"
            cells += [f"{r['distinct']} / {r['inner']}", cos]
        lines.append(f"| {block} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

