"""The catalog: checkpoints by the id that requests use as ``arch``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from service.archs import param_count
from service.errors import CheckpointError, UnknownArch
from service.export import predict_size
from service.export.calibration import servable_dtypes
from service.hypernet.checkpoint import Checkpoint, load_checkpoint
from service.serving.families import describe_families

# GET /archs is keyed by catalog id plus this one section (service/serving/families.py): no checkpoint may take it.
FAMILIES_KEY = "families"


class Catalog:
    """Read-only once built: the description is computed once and shared by every caller."""

    def __init__(self, checkpoints: Iterable[Checkpoint]):
        self._by_id: dict[str, Checkpoint] = {}
        self._entries: dict[str, dict[str, Any]] | None = None
        self._description: dict[str, Any] | None = None
        for ckpt in checkpoints:
            arch = ckpt.manifest.arch
            if arch == FAMILIES_KEY:
                raise CheckpointError(f"catalog id {arch!r} is reserved for the families section of GET /archs")
            if arch in self._by_id:
                raise CheckpointError(f"two checkpoints claim catalog id {arch!r}")
            self._by_id[arch] = ckpt

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> Catalog:
        return cls(load_checkpoint(p) for p in paths)

    def get(self, arch: str) -> Checkpoint:
        try:
            return self._by_id[arch]
        except KeyError:
            known = ", ".join(sorted(self._by_id)) or "none"
            raise UnknownArch(f"unknown arch {arch!r}; known: {known}") from None

    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Per catalog id, its entry in GET /archs (the measured tables family requests choose from)."""
        # A parameter count and four ONNX sizes per allowed width cost about 2.2 s per checkpoint (the
        # two int8 formats 1 s each: the builder's per-channel clipping search runs even on the zero
        # placeholders): too much to redo on every GET /archs (its handler runs in the threadpool).
        if self._entries is None:
            self._entries = {arch: describe(self._by_id[arch]) for arch in self.ids()}
        return self._entries

    def describe(self) -> dict[str, Any]:
        """GET /archs: every entry by catalog id, and the ``families`` section (frontiers per dtype)."""
        if self._description is None:
            entries = self.entries()
            self._description = {**entries, FAMILIES_KEY: describe_families(entries)}
        return self._description


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """Catalog entry of one checkpoint: what a client needs to choose and use a width."""
    m = ckpt.manifest
    lo, hi = m.widths_allowed.min, m.widths_allowed.max
    return {
        "family": m.family,
        "scope": m.scope.value,
        "dataset": m.dataset,
        "widths": {"min": lo, "max": hi, "default": m.default_width,
                   "trained": {"min": m.widths_trained.min, "max": m.widths_trained.max}},
        "input_shape": [m.in_channels, *m.input_size],
        "labels": m.labels,
        "preprocess": m.preprocess.model_dump(),
        "default_samples": m.default_samples,
        "checkpoint": ckpt.short_sha,
        "params": {str(w): param_count(m.scope, w, m.in_channels, m.num_classes) for w in range(lo, hi + 1)},
        # Exact ONNX file sizes at the default K, per servable dtype and width: what `max_bytes` selects
        # against (no int8 without a calibration set).
        "bytes": {dtype: {str(w): predict_size(m, w, dtype) for w in range(lo, hi + 1)}
                  for dtype in servable_dtypes(m)},
        "evaluation": m.evaluation,
    }
