"""Folded ResNet20 state_dicts on disk (``neumeta train base`` writes them, ``permute`` rewrites
them, ``generate --format safetensors`` produces them): the one reader, for the permuter, the
hypernetwork trainer's base (its teacher), ``ship`` and ``eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from service.errors import CheckpointError

FOLDED_NAME = "folded.safetensors"  # what a base or individual training run leaves in its directory
# Metadata entries that hold JSON: the base training's sidecar (accuracy, recipe, command) and the
# permutation report.
JSON_METADATA = ("sidecar", "permutation")


def load_folded(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state_dict as contiguous float32, the file's metadata as stored) of a folded .safetensors file,
    or of a run directory's ``folded.safetensors``. Float32 whatever the file holds: a float16 model
    from ``generate`` is a valid base. Missing or unreadable: CheckpointError."""
    path = Path(path)
    if path.is_dir():
        path = path / FOLDED_NAME
    if not path.is_file():
        raise CheckpointError(f"folded model not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # a safe_open handle, not a dict: keys() is its API
            state = {k: f.get_tensor(k).float().contiguous() for k in names}
            return state, dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"cannot read folded model {path}: {exc}") from exc


def provenance(metadata: dict[str, str]) -> dict[str, Any]:
    """The JSON entries of a folded file's metadata (``JSON_METADATA``), parsed: those it carries."""
    return {k: json.loads(metadata[k]) for k in JSON_METADATA if k in metadata}
