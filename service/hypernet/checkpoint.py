"""Checkpoint format: one ``.safetensors`` file, tensors plus a JSON manifest in its metadata.

Tensors are ``inr.<param>`` (the HyperNet's stacked parameters) and ``fixed.<name>`` (folded
layers the hypernetwork does not generate). Metadata key ``neumeta.manifest`` holds the
``Manifest`` as JSON. Nothing is ever unpickled; the file's SHA-256 identifies it everywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from service.archs import Scope, tensor_specs
from service.atomic import write_atomic
from service.constants import MAX_SAMPLES
from service.errors import CheckpointError
from service.hypernet.model import HyperNet, HyperNetConfig, head_count

MANIFEST_KEY = "neumeta.manifest"
FORMAT_VERSION: Literal[1] = 1


class WidthRange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> WidthRange:
        if self.min > self.max:
            raise ValueError(f"width range min {self.min} > max {self.max}")
        return self

    def __contains__(self, width: object) -> bool:
        return isinstance(width, int) and self.min <= width <= self.max


class Preprocess(BaseModel):
    """How a raw image becomes the model's input: x = (pixel * scale - mean) / std, per channel."""

    model_config = ConfigDict(extra="forbid")
    mean: list[float]
    std: list[float]
    scale: float = 1.0 / 255.0
    layout: Literal["NCHW"] = "NCHW"
    input_shape: list[int]  # (C, H, W)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    arch: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._-]*$", description="catalog id")
    family: Literal["resnet20"] = "resnet20"
    scope: Scope
    dataset: str
    in_channels: int = Field(ge=1)
    input_size: list[int] = Field(min_length=2, max_length=2)
    num_classes: int = Field(ge=2)
    labels: list[str]
    preprocess: Preprocess
    widths_trained: WidthRange
    widths_allowed: WidthRange
    default_width: int
    inr: HyperNetConfig
    default_samples: int = Field(1, ge=1, le=MAX_SAMPLES)
    permutation: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels for {self.num_classes} classes")
        if self.default_width not in self.widths_allowed:
            raise ValueError(f"default_width {self.default_width} outside the allowed range")
        if len(self.preprocess.mean) != self.in_channels or len(self.preprocess.std) != self.in_channels:
            raise ValueError("preprocess mean/std need one value per input channel")
        heads = head_count(self.scope, self.inr.head_per_block)
        if self.inr.heads != heads:
            raise ValueError(f"inr.heads is {self.inr.heads}; a {self.scope.value}-scope INR with "
                             f"head_per_block={self.inr.head_per_block} has {heads}")
        return self


def fixed_tensor_shapes(manifest: Manifest) -> dict[str, tuple[int, ...]]:
    """Tensors the checkpoint must store as plain (fixed) tensors; they are width-independent."""
    specs = tensor_specs(manifest.scope, manifest.default_width, manifest.in_channels, manifest.num_classes)
    return {s.name: s.shape for s in specs if s.role is None}


@dataclass
class Checkpoint:
    manifest: Manifest
    hypernet: HyperNet  # eval mode, no grad
    fixed: dict[str, torch.Tensor]
    sha256: str
    path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


def checkpoint_bytes(
    manifest: Manifest, hypernet_state: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor]
) -> bytes:
    tensors = {f"inr.{k}": v.detach().float().contiguous() for k, v in hypernet_state.items()}
    tensors.update({f"fixed.{k}": v.detach().float().contiguous() for k, v in fixed.items()})
    return st_save(tensors, metadata={MANIFEST_KEY: manifest.model_dump_json()})


def check_size(nbytes: int, max_bytes: int | None) -> None:
    """ValueError when a checkpoint of ``nbytes`` would exceed ``max_bytes`` (None: no limit)."""
    if max_bytes is not None and nbytes > max_bytes:
        raise ValueError(f"the checkpoint would be {nbytes} bytes, over the {max_bytes} limit: use a smaller INR")


def save_checkpoint(path: str | Path, manifest: Manifest, hypernet: HyperNet, fixed: dict[str, torch.Tensor],
                    max_bytes: int | None = None) -> str:
    """Write atomically (temp file then rename); returns the file's SHA-256. Over ``max_bytes`` nothing
    is written (ValueError), so a refused checkpoint never lies on disk beside the error."""
    data = checkpoint_bytes(manifest, hypernet.state_dict(), fixed)
    check_size(len(data), max_bytes)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _read_manifest(data: bytes, where: str) -> Manifest:
    # The safetensors header is an 8-byte little-endian length followed by JSON.
    if len(data) < 8:
        raise CheckpointError(f"{where}: file is truncated ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise CheckpointError(f"{where}: truncated or not a safetensors file (header length {n})")
    try:
        header = json.loads(data[8 : 8 + n])
        raw = header["__metadata__"][MANIFEST_KEY]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: no readable '{MANIFEST_KEY}' metadata ({exc})") from None
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise CheckpointError(f"{where}: invalid manifest: {loc}: {first['msg']}") from None


def parse_checkpoint(data: bytes, where: str = "checkpoint") -> Checkpoint:
    """Validate and load checkpoint bytes; every failure is a ``CheckpointError``."""
    manifest = _read_manifest(data, where)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: corrupt tensor data ({exc})") from None
    hypernet = HyperNet(manifest.inr)
    expected = {f"inr.{k}": tuple(v.shape) for k, v in hypernet.state_dict().items()}
    expected.update({f"fixed.{k}": s for k, s in fixed_tensor_shapes(manifest).items()})
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{where}: tensors missing {missing[:5]} unexpected {unexpected[:5]}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(f"{where}: {name} has shape {tuple(tensors[name].shape)}, expected {shape}")
        if not torch.isfinite(tensors[name]).all():
            raise CheckpointError(f"{where}: {name} holds NaN or inf")
    hypernet.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("inr.")})
    hypernet.eval().requires_grad_(False)
    fixed = {k[6:]: v for k, v in tensors.items() if k.startswith("fixed.")}
    return Checkpoint(manifest, hypernet, fixed, hashlib.sha256(data).hexdigest())


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    ckpt = parse_checkpoint(data, where=str(path))
    ckpt.path = path
    return ckpt
