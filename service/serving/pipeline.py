"""The one place that turns a request (checkpoint, width, dtype, K, backend, format) into model bytes.

Both the ``neumeta generate`` command and the HTTP service call ``render_model``; it validates,
generates the folded state_dict, exports it and hashes the result. It is synchronous and CPU/GPU
bound: the service runs it off the event loop. The service exports ONNX; ``neumeta generate
--format safetensors`` asks for the folded state_dict instead: for PyTorch users, and as a
``--base`` (KD teacher) for ``neumeta train hypernet``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

from kernels.dispatch import resolve_backend
from service.archs import param_count
from service.constants import BACKENDS, DEFAULT_KERNEL_PRECISION, DTYPES, WEIGHT_FORMATS
from service.errors import InvalidParameter
from service.export import GENERATOR_VERSION, build_onnx
from service.export.calibration import activation_ranges, calibration_images
from service.hypernet.checkpoint import Checkpoint
from service.hypernet.generate import check_request, generate

__all__ = ["GENERATOR_VERSION", "WEIGHT_FORMATS", "ModelBlob", "check_dtype", "render_model"]

SAFETENSORS_DTYPES = {"float32": torch.float32, "float16": torch.float16}  # the int8s are ONNX quantizations


@dataclass(frozen=True)
class ModelBlob:
    """An exported model and everything the service reports about it (headers, logs, CLI)."""

    data: bytes
    sha256: str
    arch: str
    width: int
    dtype: str
    samples: int
    params: int
    checkpoint_sha: str
    backend: str  # the concrete backend that generated it ("torch" or "triton"), never "auto"
    format: str = "onnx"  # one of WEIGHT_FORMATS

    @property
    def filename(self) -> str:
        return f"{self.arch}-w{self.width}-{self.dtype}.{self.format}"

    def __repr__(self) -> str:  # the default would print the whole blob
        return (f"ModelBlob({self.filename}, {len(self.data)} bytes, sha256={self.sha256[:12]}, "
                f"K={self.samples}, backend={self.backend})")


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise InvalidParameter(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def render_model(
    ckpt: Checkpoint,
    width: int,
    dtype: str = "float32",
    samples: int | None = None,
    backend: str = "auto",
    precision: str = DEFAULT_KERNEL_PRECISION,
    export_format: str = "onnx",
) -> ModelBlob:
    """Generate the network at ``width`` and export it; raises the service's typed errors.

    Raises ``WidthOutOfRange``/``InvalidParameter`` for a bad request and
    ``kernels.dispatch.BackendUnavailable`` when a forced backend cannot run here.
    """
    k = check_request(ckpt, width, samples)
    check_dtype(dtype)
    if backend not in BACKENDS:
        raise InvalidParameter(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if export_format not in WEIGHT_FORMATS:
        raise InvalidParameter(f"format must be one of {', '.join(WEIGHT_FORMATS)}, got {export_format!r}")
    if export_format == "safetensors" and dtype not in SAFETENSORS_DTYPES:
        raise InvalidParameter(f"safetensors weights are {' or '.join(SAFETENSORS_DTYPES)}, got {dtype!r} "
                               f"({dtype} is an ONNX quantization: use --format onnx)")
    if dtype == "int8":
        calibration_images(ckpt.manifest.dataset)  # CalibrationUnavailable before any work
    concrete = resolve_backend(backend)
    state = generate(ckpt, width, samples=k, backend=concrete, precision=precision)
    if export_format == "onnx":
        # int8 activations are calibrated on the shipped images (service.export.calibration).
        ranges = activation_ranges(state, ckpt.manifest) if dtype == "int8" else None
        data = build_onnx(state, ckpt.manifest, width, dtype, ckpt.sha256, k, ranges)
    else:
        data = safetensors_bytes(state, ckpt, width, dtype, k)
    m = ckpt.manifest
    return ModelBlob(
        data=data, sha256=hashlib.sha256(data).hexdigest(), arch=m.arch, width=width, dtype=dtype, samples=k,
        params=param_count(m.scope, width, m.in_channels, m.num_classes), checkpoint_sha=ckpt.sha256,
        backend=concrete, format=export_format,
    )


def safetensors_bytes(state: dict[str, torch.Tensor], ckpt: Checkpoint, width: int, dtype: str, k: int) -> bytes:
    """The folded state_dict (BN already in the conv biases, the layout ``service.archs.folded_model``
    loads) as a safetensors file, with the request in its metadata."""
    from safetensors.torch import save

    m = ckpt.manifest
    meta = {"arch": m.arch, "scope": m.scope, "width": width, "dtype": dtype, "samples": k,
            "checkpoint_sha256": ckpt.sha256, "generator_version": GENERATOR_VERSION}
    return save({name: w.to(SAFETENSORS_DTYPES[dtype]).contiguous() for name, w in state.items()},
                metadata={"neumeta": json.dumps(meta)})
