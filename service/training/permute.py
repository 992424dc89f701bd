"""Permute the folded full-width ResNet20's channels so its weights vary smoothly along channel axes.

NeuMeta's INR maps channel *coordinates* to weights; it learns faster and generalises across
widths better when neighbouring channels hold similar weights. Reordering channels does not change
the network's function as long as every tensor touching a channel axis is reordered the same way,
so channels are grouped by coupling:

- a residual *stream* (16/32/64 channels of stage 1/2/3): the stem conv's outputs (stage 1),
  every block's conv2 outputs, the shortcut conv's outputs; as inputs: the next blocks' conv1 and
  shortcut inputs, and for stage 3 the fc inputs. The identity shortcuts tie all of them together.
- a block's *inner* channels: its conv1 outputs (+ bias) and its conv2 inputs.

The input channels (RGB / grey) and the fc outputs (class order) are never permuted.

Objective: total variation (TV), the sum of |adjacent differences| along dim 0 and dim 1 of every
tensor. A tensor's TV along an axis depends only on that axis' order, so a group's TV is the L1
length of the path through its channels' concatenated feature vectors: the best order is a
shortest Hamiltonian path, solved as a TSP with a zero-cost dummy city.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fast_tsp
import numpy as np
import torch
from safetensors.torch import save_file

from service.archs.resnet20 import BLOCKS_PER_STAGE, STAGE_WIDTHS, block_io, block_names
from service.atomic import atomic_path
from service.errors import CheckpointError
from service.training.folded import load_folded

Member = tuple[str, int]  # (tensor name, channel axis)

# fast-tsp takes integer costs in [0, 65535]: scale to this range, round, then re-score in float.
FAST_TSP_MAX_COST = 65_535
FAST_TSP_SECONDS = 2.0


def channel_groups(state: dict[str, torch.Tensor]) -> dict[str, list[Member]]:
    """Every permutable channel group of a folded ResNet20 state_dict -> its (tensor, axis) members."""
    groups: dict[str, list[Member]] = {f"stream{s + 1}": [] for s in range(len(STAGE_WIDTHS))}
    groups["stream1"] += [("conv1.weight", 0), ("conv1.bias", 0)]
    for i, name in enumerate(block_names()):
        stage = i // BLOCKS_PER_STAGE
        cin, cout, stride = block_io(i)
        in_stream = f"stream{stage}" if (stride != 1 or cin != cout) and stage > 0 else f"stream{stage + 1}"
        out_stream = f"stream{stage + 1}"
        groups[in_stream].append((f"{name}.conv1.weight", 1))
        groups[out_stream] += [(f"{name}.conv2.weight", 0), (f"{name}.conv2.bias", 0)]
        if f"{name}.shortcut.weight" in state:
            groups[in_stream].append((f"{name}.shortcut.weight", 1))
            groups[out_stream] += [(f"{name}.shortcut.weight", 0), (f"{name}.shortcut.bias", 0)]
        groups[f"{name}.inner"] = [(f"{name}.conv1.weight", 0), (f"{name}.conv1.bias", 0),
                                   (f"{name}.conv2.weight", 1)]
    groups[f"stream{len(STAGE_WIDTHS)}"].append(("fc.weight", 1))
    return groups


def total_variation(t: torch.Tensor, axis: int) -> float:
    """Sum of |adjacent differences| of ``t`` along ``axis``."""
    return float(t.double().diff(dim=axis).abs().sum()) if t.shape[axis] > 1 else 0.0


def tensor_tv(t: torch.Tensor) -> float:
    """The objective for one tensor: TV along dim 0 plus, for 2-D and up, dim 1."""
    return sum(total_variation(t, axis) for axis in range(min(2, t.dim())))


def channel_features(state: dict[str, torch.Tensor], members: list[Member]) -> np.ndarray:
    """(channels, features) float64: each member's slice for a channel, flattened and concatenated."""
    parts = [state[name].double().movedim(axis, 0).reshape(state[name].shape[axis], -1) for name, axis in members]
    return torch.cat(parts, dim=1).numpy()


def path_cost(dist: np.ndarray, order: np.ndarray | list[int]) -> float:
    order = np.asarray(order)
    return float(dist[order[:-1], order[1:]].sum())


# --- shortest Hamiltonian path -------------------------------------------------------------------

def _with_dummy(dist: np.ndarray) -> np.ndarray:
    """Add city n at distance 0 from all: a shortest tour through it is a shortest open path."""
    n = len(dist)
    out = np.zeros((n + 1, n + 1))
    out[:n, :n] = dist
    return out


def _tour_to_path(tour: list[int] | np.ndarray, dummy: int) -> np.ndarray:
    tour = np.asarray(tour)
    k = int(np.flatnonzero(tour == dummy)[0])
    return np.concatenate([tour[k + 1:], tour[:k]])


def _two_opt(dist: np.ndarray, tour: np.ndarray) -> np.ndarray:
    """Best-improvement 2-opt on a closed tour with float costs; each pass vectorised over all (i, j)."""
    n = len(tour)
    while True:
        a, b = tour, np.roll(tour, -1)  # edge i: a[i] -> b[i]
        # Replacing edges i and j (i < j) by a[i]-a[j] and b[i]-b[j] reverses tour[i+1 .. j].
        delta = dist[a[:, None], a[None, :]] + dist[b[:, None], b[None, :]] - dist[a, b][:, None] - dist[a, b][None, :]
        delta[np.tril_indices(n, 1)] = 0.0
        delta[0, n - 1] = 0.0  # adjacent through the wrap-around
        i, j = np.unravel_index(np.argmin(delta), delta.shape)
        if delta[i, j] >= -1e-12:
            return tour
        tour = np.concatenate([tour[:i + 1], tour[i + 1:j + 1][::-1], tour[j + 1:]])


def _or_opt(dist: np.ndarray, tour: np.ndarray, max_segment: int = 3) -> tuple[np.ndarray, bool]:
    """First-improvement Or-opt: move a segment of 1..3 cities (either orientation) elsewhere."""
    n = len(tour)
    for length in range(1, min(max_segment, n - 2) + 1):
        for start in range(n):
            seg = np.roll(tour, -start)[:length]
            rest = np.roll(tour, -start)[length:]  # open chain: prev = rest[-1], next = rest[0]
            removed_gain = dist[rest[-1], seg[0]] + dist[seg[-1], rest[0]] - dist[rest[-1], rest[0]]
            p, q = rest[:-1], rest[1:]  # candidate gaps p -> q inside the rest
            fwd = dist[p, seg[0]] + dist[seg[-1], q] - dist[p, q]
            rev = dist[p, seg[-1]] + dist[seg[0], q] - dist[p, q]
            best = np.minimum(fwd, rev)
            k = int(np.argmin(best))
            if best[k] < removed_gain - 1e-12:
                piece = seg if fwd[k] <= rev[k] else seg[::-1]
                return np.concatenate([rest[:k + 1], piece, rest[k + 1:]]), True
    return tour, False


def local_search(dist: np.ndarray, tour: np.ndarray) -> np.ndarray:
    """2-opt and Or-opt on float costs until neither improves the tour."""
    improved = True
    while improved:
        tour = _two_opt(dist, tour)
        tour, improved = _or_opt(dist, tour)
    return tour


def _nearest_neighbour_tour(dist: np.ndarray, start: int) -> np.ndarray:
    n = len(dist)
    tour, free = [start], np.ones(n, bool)
    free[start] = False
    for _ in range(n - 1):
        row = np.where(free, dist[tour[-1]], np.inf)
        tour.append(int(np.argmin(row)))
        free[tour[-1]] = False
    return np.array(tour)


def shortest_hamiltonian_path(dist: np.ndarray, seconds: float = FAST_TSP_SECONDS) -> np.ndarray:
    """Order of the ``n`` cities minimising the open path's float cost under symmetric ``dist``.

    fast-tsp (exact for <= 20 cities, Or-opt/LK-style search beyond) works on integer costs of at
    most 16 bits, so it sees the costs scaled and rounded; its tour is then re-optimised on the
    true float costs with 2-opt + Or-opt, and compared with nearest-neighbour + the same local
    search. The cheaper path (by float cost) wins.
    """
    n = len(dist)
    if n <= 2:
        return np.arange(n)
    full = _with_dummy(np.asarray(dist, dtype=np.float64))
    scale = FAST_TSP_MAX_COST / max(full.max(), 1e-300)
    quantised = np.rint(full * scale).astype(np.int64)
    candidates = [np.asarray(fast_tsp.find_tour(quantised.tolist(), duration_seconds=seconds,
                                                stop_when_converged=True))]
    candidates.append(_nearest_neighbour_tour(full, n))
    paths = [_tour_to_path(local_search(full, tour), n) for tour in candidates]
    best = min(paths, key=lambda p: path_cost(full, p))
    # A path and its reverse cost the same: orient canonically so equal solutions give equal files.
    return best if best[0] < best[-1] else best[::-1].copy()


# --- apply ---------------------------------------------------------------------------------------

@dataclass
class GroupReport:
    channels: int
    tv_before: float
    tv_after: float


def permute_folded(state: dict[str, torch.Tensor], seconds: float = FAST_TSP_SECONDS
                   ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(permuted state_dict computing the same function, report with TV per group and in total).

    ``seconds`` bounds fast-tsp's search per group of more than 20 channels (smaller ones are exact).
    """
    bad = [name for name, t in state.items() if not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"non-finite weights in {', '.join(bad)}: refusing to permute a diverged model")
    groups = channel_groups(state)
    permuted = {k: v.clone() for k, v in state.items()}
    report: dict[str, GroupReport] = {}
    orders: dict[str, list[int]] = {}
    for group, members in groups.items():
        feats = channel_features(state, members)  # (C, F)
        dist = np.abs(feats[:, None, :] - feats[None, :, :]).sum(-1)  # (C, C) L1
        order = shortest_hamiltonian_path(dist, seconds)
        orders[group] = order.tolist()
        index = torch.as_tensor(order, dtype=torch.long)
        for name, axis in members:
            permuted[name] = permuted[name].index_select(axis, index).contiguous()
        report[group] = GroupReport(len(order), path_cost(dist, np.arange(len(order))), path_cost(dist, order))
    total_before = sum(tensor_tv(t) for t in state.values())
    total_after = sum(tensor_tv(t) for t in permuted.values())
    summary = {
        "objective": "total variation along dim 0 and dim 1 of every tensor",
        "solver": f"fast-tsp {getattr(fast_tsp, '__version__', '')} (16-bit scaled costs) + float 2-opt/Or-opt",
        "tv_before": total_before, "tv_after": total_after,
        "groups": {g: vars(r) for g, r in report.items()}, "orders": orders,
    }
    return permuted, summary


def permute_file(src: str | Path, dst: str | Path, seconds: float = FAST_TSP_SECONDS) -> dict[str, Any]:
    """Permute a folded.safetensors into ``dst`` (+ ``dst`` with .json: the TV report); returns it."""
    state, metadata = load_folded(src)
    permuted, report = permute_folded(state, seconds)
    dst = Path(dst)
    report = {"source": str(src), **report}
    metadata["permutation"] = json.dumps({k: v for k, v in report.items() if k != "orders"})
    with atomic_path(dst) as tmp:
        save_file(permuted, str(tmp), metadata=metadata)
    dst.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m service.training.permute FOLDED.safetensors PERMUTED.safetensors")
    result = permute_file(sys.argv[1], sys.argv[2])
    for group, r in result["groups"].items():
        print(f"{group:16s} C={r['channels']:3d}  TV {r['tv_before']:10.3f} -> {r['tv_after']:10.3f}")
    print(f"total TV {result['tv_before']:.3f} -> {result['tv_after']:.3f}")
