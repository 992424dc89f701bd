"""Coordinate tables: one row per (out, in) channel pair of each generated tensor, grouped by head."""

import itertools

import pytest
import torch

from service.archs import ROLES, tensor_specs
from service.archs.resnet20 import NUM_BLOCKS
from service.hypernet.coords import COORD_DIM, coord_table, scatter


def _pairs(shape):
    return shape[0] * (shape[1] if len(shape) > 1 else 1)


@pytest.mark.parametrize("scope,width", [("all", 1), ("all", 17), ("all", 64), ("last", 5), ("last", 64)])
def test_row_count_is_one_per_channel_pair(scope, width):
    table = coord_table(scope, width, 1, 10)
    generated = [s for s in tensor_specs(scope, width, 1, 10) if s.role]
    assert table.rows == sum(_pairs(s.shape) for s in generated)
    assert table.coords.shape == table.jitter.shape == (table.rows, COORD_DIM)
    assert table.out_scale.shape == (table.rows,)


def test_rows_are_grouped_by_head_in_role_order():
    table = coord_table("all", 24, 1, 10)
    offsets = table.head_offsets
    assert len(offsets) == len(ROLES) + 1 and offsets[0] == 0 and offsets[-1] == table.rows
    for h, role in enumerate(ROLES):
        inside = [s for s in table.slots if offsets[h] <= s.start < offsets[h + 1]]
        assert inside and all(s.name.endswith(role) for s in inside)
        assert sum(s.stop - s.start for s in inside) == offsets[h + 1] - offsets[h]
    # Slots tile the table with no gaps.
    ends = [(s.start, s.stop) for s in table.slots]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ends))


def _naive_table(scope, width, in_channels, num_classes, norm=64.0, noise=1.0):
    """Per-channel Python loops: the definition the vectorised builder must reproduce."""
    coords, jitter, scale = [], [], []
    specs = [s for s in tensor_specs(scope, width, in_channels, num_classes) if s.role]
    for role in ROLES:
        for spec in (s for s in specs if s.role == role):
            s0 = spec.shape[0]
            s1 = spec.shape[1] if len(spec.shape) > 1 else 1
            for a in range(s0):
                for b in range(s1):
                    coords.append([(spec.block + 0.5) / NUM_BLOCKS, (a + 0.5) / s0, (b + 0.5) / s1,
                                   s0 / norm, s1 / norm])
                    jitter.append([0.0, noise / s0, noise / s1 if len(spec.shape) > 1 else 0.0, 0.0, 0.0])
                    scale.append(1.0 / s1)
    return torch.tensor(coords), torch.tensor(jitter), torch.tensor(scale)


@pytest.mark.parametrize("scope,width", [("last", 3), ("all", 2)])
def test_vectorised_build_equals_naive_loop(scope, width):
    table = coord_table(scope, width, 1, 10, 64.0, 1.0)
    coords, jitter, scale = _naive_table(scope, width, 1, 10)
    torch.testing.assert_close(table.coords, coords, rtol=0, atol=1e-7)
    torch.testing.assert_close(table.jitter, jitter, rtol=0, atol=1e-7)
    torch.testing.assert_close(table.out_scale, scale, rtol=0, atol=1e-7)


def test_tables_are_cached():
    assert coord_table("all", 9, 1, 10) is coord_table("all", 9, 1, 10)
    assert coord_table("all", 9, 1, 10) is not coord_table("all", 10, 1, 10)


def test_scatter_reshapes_rows_into_tensors():
    table = coord_table("last", 4, 1, 10)
    out = torch.arange(table.rows * 9, dtype=torch.float32).reshape(table.rows, 9)
    tensors = scatter(table, out)
    w = tensors["layer3.2.conv1.weight"]  # (4, 64, 3, 3): row-major over (a, b)
    slot = next(s for s in table.slots if s.name == "layer3.2.conv1.weight")
    assert w.shape == (4, 64, 3, 3)
    assert torch.equal(w[1, 2].flatten(), out[slot.start + 1 * 64 + 2])
    bias_slot = next(s for s in table.slots if s.name == "layer3.2.conv1.bias")
    assert torch.equal(tensors["layer3.2.conv1.bias"], out[bias_slot.start : bias_slot.stop, 0])
