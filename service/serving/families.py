"""Families: the catalog entries that serve the same network, and the right one for a budget.

Every checkpoint's manifest names its ``family`` (``resnet20``: the shipped ``resnet20`` and
``resnet20-last`` are two hypernetworks of one family with different morph scopes). An edge
developer has a budget (bytes of the file, parameters) or an accuracy floor, not a preference for a
checkpoint, so ``GET /model?family=...`` chooses across the family from the measured tables that
``GET /archs`` publishes: the accuracy per width in each manifest's ``evaluation`` and the exact
bytes per dtype and width. Everything here works on those published tables (``Catalog.entries``),
so a client can recompute any choice from ``/archs`` alone.

The accuracy is the one the manifest measured, on the float32 network at the evaluation's K; the
bytes are those of the requested dtype. A width without a measured accuracy is never chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from service.errors import NoModelFits, UnknownArch


@dataclass(frozen=True)
class Candidate:
    """One (arch, width) of a family as a file of one dtype: what it costs and how well it measured."""

    arch: str
    width: int
    bytes: int
    params: int
    accuracy: float  # percent, as the manifest's evaluation.per_width records it
    measured_on: str  # the split the accuracy was measured on, e.g. "test" or "test[:5000]"

    def public(self) -> dict[str, Any]:
        return asdict(self)

    def named(self) -> str:
        return (f"{self.arch} width {self.width} ({self.bytes} bytes, {self.params} parameters, "
                f"{self.accuracy:g}% on {self.measured_on})")


def family_names(entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return sorted({entry["family"] for entry in entries.values()})


def candidates(entries: Mapping[str, Mapping[str, Any]], family: str, dtype: str) -> list[Candidate]:
    """Every measured (arch, width) of ``family`` servable as ``dtype``; ``UnknownArch`` for no such family."""
    members = {arch: entry for arch, entry in entries.items() if entry["family"] == family}
    if not members:
        known = ", ".join(family_names(entries)) or "none"
        raise UnknownArch(f"unknown family {family!r}; known: {known}")
    found = []
    for arch, entry in sorted(members.items()):
        sizes = entry["bytes"].get(dtype)  # absent: this arch cannot be served as dtype (int8 needs calibration)
        evaluation = entry.get("evaluation") or {}
        if sizes is None:
            continue
        for width, row in (evaluation.get("per_width") or {}).items():
            if width in sizes and isinstance(row, Mapping) and row.get("accuracy") is not None:
                found.append(Candidate(arch, int(width), sizes[width], entry["params"][width], float(row["accuracy"]),
                                       str(row.get("measured_on") or evaluation.get("split", "unknown"))))
    return found


def frontier(found: list[Candidate]) -> list[Candidate]:
    """The Pareto frontier of (bytes, accuracy): each model more accurate than every smaller one,
    smallest first. What ``max_bytes`` alone chooses is always on it (not so for ``max_params``: parameters
    and bytes do not order models the same way across dtypes and scopes)."""
    best: list[Candidate] = []
    for c in sorted(found, key=lambda c: (c.bytes, -c.accuracy, c.params, c.arch, c.width)):
        if not best or c.accuracy > best[-1].accuracy:
            best.append(c)
    return best


def describe_families(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``families`` section of ``GET /archs``: per family, its archs and its frontier per dtype."""
    described: dict[str, Any] = {}
    for family in family_names(entries):
        archs = sorted(arch for arch, entry in entries.items() if entry["family"] == family)
        dtypes = sorted({dtype for arch in archs for dtype in entries[arch]["bytes"]})
        described[family] = {
            "archs": archs,
            "frontier": {dtype: [c.public() for c in frontier(candidates(entries, family, dtype))]
                         for dtype in dtypes},
        }
    return described


def choose(
    found: list[Candidate], family: str, dtype: str, *, max_bytes: int | None = None,
    max_params: int | None = None, min_accuracy: float | None = None,
) -> Candidate:
    """The model a family request names; raises ``NoModelFits`` naming the closest model.

    With ``min_accuracy``: the smallest file (in bytes of ``dtype``) whose accuracy is at least the
    floor and that fits every budget given. Without: the most accurate model that fits, ties going
    to fewer bytes. The remaining keys only make the choice deterministic.
    """
    if not found:
        raise NoModelFits(f"no model of family {family!r} has a measured accuracy and can be served as {dtype}; "
                          "ask for an arch and a width instead (GET /archs)")

    def within_budget(c: Candidate) -> bool:
        return (max_bytes is None or c.bytes <= max_bytes) and (max_params is None or c.params <= max_params)

    def accurate_enough(c: Candidate) -> bool:
        return min_accuracy is None or c.accuracy >= min_accuracy

    fits = [c for c in found if within_budget(c) and accurate_enough(c)]
    if fits and min_accuracy is not None:
        return min(fits, key=lambda c: (c.bytes, -c.accuracy, c.params, c.arch, c.width))
    if fits:
        return min(fits, key=lambda c: (-c.accuracy, c.bytes, c.params, c.arch, c.width))
    asked = _describe_request(family, dtype, max_bytes, max_params, min_accuracy)
    raise NoModelFits(f"no model of family {family!r} fits {asked}; the closest is "
                      f"{_closest(found, accurate_enough, by_params=max_bytes is None and max_params is not None)}")


def _closest(found: list[Candidate], accurate_enough: Callable[[Candidate], bool], by_params: bool) -> str:
    """What to tell a caller nothing fits: the smallest model that meets the floor, if any does (then
    only the budget is short; smallest in parameters when that was the only budget), or else the most
    accurate model there is."""
    meeting_floor = [c for c in found if accurate_enough(c)]
    if meeting_floor:
        def size(c: Candidate) -> tuple[int, int]:
            return (c.params, c.bytes) if by_params else (c.bytes, c.params)

        smallest = min(meeting_floor, key=lambda c: (*size(c), -c.accuracy, c.arch, c.width))
        floor = " meeting the accuracy floor" if len(meeting_floor) < len(found) else ""
        return f"the smallest model{floor}, {smallest.named()}"
    best = min(found, key=lambda c: (-c.accuracy, c.bytes, c.arch, c.width))
    return f"the most accurate model, {best.named()}"


def _describe_request(family: str, dtype: str, max_bytes: int | None, max_params: int | None,
                      min_accuracy: float | None) -> str:
    parts = [f"max_bytes={max_bytes}" if max_bytes is not None else "",
             f"max_params={max_params}" if max_params is not None else "",
             f"min_accuracy={min_accuracy:g}" if min_accuracy is not None else ""]
    return " and ".join(p for p in parts if p) + f" as {dtype}" if any(parts) else f"{family} as {dtype}"
