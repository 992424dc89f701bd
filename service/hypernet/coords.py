"""Coordinate tables: one row per (output channel, input channel) pair of every generated tensor.

Row features (D = 5), all clean values; training and sampling add noise through ``jitter``:

    0  block position        (block + 0.5) / 9
    1  output-channel ratio  (a + 0.5) / S0          jitter noise / S0  (about one channel)
    2  input-channel ratio   (b + 0.5) / S1          jitter noise / S1  (weights only)
    3  S0 / norm
    4  S1 / norm                                     S1 = 1 for biases

Rows are grouped by head (tensor role, in ``ROLES`` order) and, within a role, by block; the
head of a row is therefore exact, never inferred from a noisy feature. Weight rows are emitted
in (a, b) row-major order so the (rows, k*k) output reshapes straight into (S0, S1, k, k).
Outputs are scaled by 1/S1 (fan-in channels), as in NeuMeta, so widths share one value scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from service.archs import FULL_WIDTH, ROLES, Scope, tensor_specs
from service.archs.resnet20 import NUM_BLOCKS

COORD_DIM = 5


@dataclass(frozen=True)
class Slot:
    """Where one generated tensor's rows sit in the table."""

    name: str
    shape: tuple[int, ...]
    start: int
    stop: int
    full_shape: tuple[int, ...]  # the tensor's shape at full width


@dataclass(frozen=True)
class CoordTable:
    coords: torch.Tensor  # (N, D) float32
    jitter: torch.Tensor  # (N, D) float32
    out_scale: torch.Tensor  # (N,) float32
    head_offsets: tuple[int, ...]  # (len(ROLES) + 1,)
    slots: tuple[Slot, ...]

    @property
    def slot_offsets(self) -> tuple[int, ...]:
        """Row boundaries of every generated tensor, in table order: the heads of a per-block INR."""
        return (0, *(s.stop for s in self.slots))

    @property
    def rows(self) -> int:
        return self.coords.shape[0]

    def to(self, device: torch.device | str) -> CoordTable:
        return CoordTable(self.coords.to(device), self.jitter.to(device), self.out_scale.to(device),
                          self.head_offsets, self.slots)


def _tensor_rows(
    block: int, shape: tuple[int, ...], norm: float, noise: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(coords, jitter, out_scale) for one tensor: (R, D), (R, D), (R,)."""
    s0 = shape[0]
    s1 = shape[1] if len(shape) > 1 else 1
    a = torch.arange(s0, dtype=torch.float32).repeat_interleave(s1)  # (S0*S1,) slow axis
    b = torch.arange(s1, dtype=torch.float32).repeat(s0)  # fast axis
    n = s0 * s1
    coords = torch.stack(
        (
            torch.full((n,), (block + 0.5) / NUM_BLOCKS),
            (a + 0.5) / s0,
            (b + 0.5) / s1,
            torch.full((n,), s0 / norm),
            torch.full((n,), s1 / norm),
        ),
        dim=1,
    )
    jitter = torch.zeros_like(coords)
    jitter[:, 1] = noise / s0
    if len(shape) > 1:
        jitter[:, 2] = noise / s1
    return coords, jitter, torch.full((n,), 1.0 / s1)


@lru_cache(maxsize=256)
def coord_table(
    scope: str, width: int, in_channels: int, num_classes: int, norm: float = 64.0, noise: float = 1.0,
    device: str = "cpu",
) -> CoordTable:
    """The (cached, read-only) table of every generated tensor of a width, on ``device`` (training
    on a GPU reads it there every step, so each device keeps its own cached copy)."""
    if torch.device(device).type != "cpu":
        return coord_table(scope, width, in_channels, num_classes, norm, noise).to(device)
    specs = [s for s in tensor_specs(Scope(scope), width, in_channels, num_classes) if s.role]
    full_shapes = {s.name: s.shape for s in tensor_specs(Scope(scope), FULL_WIDTH, in_channels, num_classes)}
    parts, slots, offsets, row = [], [], [0], 0
    for role in ROLES:
        for spec in (s for s in specs if s.role == role):
            assert spec.block is not None
            part = _tensor_rows(spec.block, spec.shape, norm, noise)
            parts.append(part)
            slots.append(Slot(spec.name, spec.shape, row, row + part[0].shape[0], full_shapes[spec.name]))
            row += part[0].shape[0]
        offsets.append(row)
    coords, jitter, scale = (torch.cat(p) for p in zip(*parts, strict=True))
    return CoordTable(coords, jitter, scale, tuple(offsets), tuple(slots))


def scatter(table: CoordTable, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split the INR output (N, O) into named tensors; weights take all k*k, biases output 0.

    One ``split`` over the table's slots (they cover its rows in order), not a slice per tensor: in
    training, each slice's backward wrote a full (N, O) zero tensor, the split's is one ``cat``."""
    tensors = {}
    for slot, rows in zip(table.slots, torch.split(out, [s.stop - s.start for s in table.slots]), strict=True):
        if len(slot.shape) == 1:
            tensors[slot.name] = rows[:, 0].contiguous()
        else:
            k2 = slot.shape[2] * slot.shape[3]
            # A k x k kernel smaller than the head's output takes the first k*k values (3 x 3: all, a view).
            tensors[slot.name] = (rows if k2 == rows.shape[1] else rows[:, :k2]).reshape(slot.shape).contiguous()
    return tensors
