"""Channel permutation: same function, lower total variation, optimal paths on checkable instances."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from service.archs import ResNet20, fold_batchnorm, folded_model, inner_widths
from service.errors import CheckpointError
from service.training.permute import (
    channel_groups,
    path_cost,
    permute_file,
    permute_folded,
    shortest_hamiltonian_path,
    tensor_tv,
)

SECONDS = 0.1  # fast-tsp budget per large group: plenty for tests, the float local search follows


def trained_like_folded(seed: int = 0, widths: list[int] | None = None) -> dict[str, torch.Tensor]:
    """A folded ResNet20 whose BatchNorms hold non-trivial statistics (as after training)."""
    torch.manual_seed(seed)
    model = ResNet20(1, 10, widths).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return fold_batchnorm(model)


@pytest.fixture(scope="module")
def permuted():
    torch.set_num_threads(1)
    state = trained_like_folded()
    return state, *permute_folded(state, SECONDS)


def test_permuted_network_computes_the_same_function(permuted):
    state, new, _ = permuted
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (folded_model(state, 1, 10)(x) - folded_model(new, 1, 10)(x)).abs().max().item()
    assert diff < 1e-5
    assert any(not torch.equal(state[k], new[k]) for k in state), "nothing was permuted"


def test_total_variation_drops_in_every_group_and_in_total(permuted):
    state, new, report = permuted
    assert report["tv_after"] < report["tv_before"]
    assert report["tv_before"] == pytest.approx(sum(tensor_tv(t) for t in state.values()))
    assert report["tv_after"] == pytest.approx(sum(tensor_tv(t) for t in new.values()))
    assert len(report["groups"]) == 3 + 9
    for name, group in report["groups"].items():
        assert group["tv_after"] <= group["tv_before"] + 1e-9, name
    # Group TVs account exactly for the change of the total (other axes are never permuted).
    drop = sum(g["tv_before"] - g["tv_after"] for g in report["groups"].values())
    assert drop == pytest.approx(report["tv_before"] - report["tv_after"], rel=1e-9)


def test_inputs_and_class_order_are_never_permuted(permuted):
    state, new, report = permuted
    assert torch.equal(state["fc.bias"], new["fc.bias"])
    members = [m for g in channel_groups(state).values() for m in g]
    assert ("conv1.weight", 1) not in members and ("fc.weight", 0) not in members
    assert len(members) == len(set(members)), "an axis belongs to two groups"
    # Every channel axis of every block tensor is covered.
    for name, t in state.items():
        for axis in range(min(2, t.dim())):
            if name not in ("fc.bias",) and (name, axis) not in (("conv1.weight", 1), ("fc.weight", 0)):
                assert (name, axis) in members, (name, axis)
    assert sorted(report["orders"]["stream3"]) == list(range(64))


def test_narrow_models_permute_too():
    state = trained_like_folded(1, inner_widths("all", 12))
    new, report = permute_folded(state, SECONDS)
    assert report["groups"]["layer1.0.inner"]["channels"] == 3
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert (folded_model(state, 1, 10)(x) - folded_model(new, 1, 10)(x)).abs().max() < 1e-5


def brute_force_path(dist: np.ndarray) -> float:
    n = len(dist)
    return min(path_cost(dist, p) for p in itertools.permutations(range(n)) if p[0] < p[-1])


def test_solver_is_optimal_on_small_float_instances():
    rng = np.random.default_rng(0)
    for n in (3, 5, 8):
        # Costs below 1: a solver truncating floats to integers would see all zeros.
        pts = rng.random((n, 4))
        dist = np.abs(pts[:, None] - pts[None]).sum(-1) / 4.0
        order = shortest_hamiltonian_path(dist, SECONDS)
        assert sorted(order.tolist()) == list(range(n))
        assert path_cost(dist, order) == pytest.approx(brute_force_path(dist), abs=1e-12)


def test_solver_recovers_a_shuffled_line_beyond_the_exact_size():
    # 64 points on a line (L1): the only shortest paths are the sorted order and its reverse.
    rng = np.random.default_rng(2)
    x = np.sort(rng.random(64)) * 1e-3  # tiny float costs
    perm = rng.permutation(64)
    dist = np.abs(x[perm][:, None] - x[perm][None])
    order = shortest_hamiltonian_path(dist, SECONDS)
    assert path_cost(dist, order) == pytest.approx(x[-1] - x[0], rel=1e-9)
    # Of the two optimal orientations the canonical one (first index < last) is returned.
    assert order[0] < order[-1]
    assert np.array_equal(order, shortest_hamiltonian_path(dist, SECONDS))


def test_permute_file_writes_model_and_report(tmp_path):
    state = trained_like_folded(2, inner_widths("all", 8))
    save_file(state, tmp_path / "folded.safetensors", metadata={"sidecar": "{}"})
    report = permute_file(tmp_path / "folded.safetensors", tmp_path / "permuted.safetensors", SECONDS)
    out = load_file(tmp_path / "permuted.safetensors")
    assert out.keys() == state.keys()
    on_disk = json.loads((tmp_path / "permuted.json").read_text())
    assert on_disk["tv_after"] == pytest.approx(report["tv_after"])
    assert on_disk["tv_after"] < on_disk["tv_before"]
    state["fc.bias"][0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        permute_folded(state, SECONDS)
    with pytest.raises(CheckpointError, match="not found"):
        permute_file(tmp_path / "missing.safetensors", tmp_path / "x.safetensors")
