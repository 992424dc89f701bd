"""The one place that turns a resolved request (``service.serving.request``) into model bytes.

``render`` generates the folded state_dict, exports it and hashes the result, once; it checks
nothing (the request was checked when it was resolved). The HTTP service takes it as an injected
dependency (``service.api.deps.get_generator``); ``neumeta generate`` and scripts call
``render_model``, which resolves first. It is synchronous and CPU/GPU bound: the service runs it
off the event loop. The service exports ONNX; ``neumeta generate --format safetensors`` asks for
the folded state_dict instead: for PyTorch users, and as a ``--base`` (KD teacher) for
``neumeta train hypernet``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import torch

from service.constants import DEFAULT_KERNEL_PRECISION, GENERATION_THREADS, WEIGHT_FORMATS
from service.export import GENERATOR_VERSION, build_onnx
from service.export.calibration import activation_ranges, calibration_images
from service.hypernet.checkpoint import Checkpoint
from service.hypernet.generate import folded_state
from service.serving.request import ModelRequest, resolve

__all__ = ["GENERATOR_VERSION", "WEIGHT_FORMATS", "Generator", "ModelBlob", "pin_generation_threads", "render",
           "render_model"]

def pin_generation_threads() -> None:
    """Give the calling thread's torch the intra-op thread count generation is defined at
    (``GENERATION_THREADS``). The count is per OS thread (OpenMP), so every thread that generates
    calls it: the service's pool workers as they start, ``neumeta generate`` before it renders."""
    torch.set_num_threads(GENERATION_THREADS)


SAFETENSORS_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True, eq=False)
class ModelBlob:
    """An exported model: its bytes, their SHA-256 (hashed once, here) and the request that made them."""

    request: ModelRequest
    data: bytes
    sha256: str

    # What the service reports about it (headers, logs, the CLI's summary line), from the request.
    arch = property(lambda self: self.request.arch)
    width = property(lambda self: self.request.width)
    dtype = property(lambda self: self.request.dtype)
    samples = property(lambda self: self.request.samples)
    params = property(lambda self: self.request.params)
    backend = property(lambda self: self.request.backend)  # concrete ("torch" or "triton"), never "auto"
    format = property(lambda self: self.request.format)
    filename = property(lambda self: self.request.filename)
    checkpoint_sha = property(lambda self: self.request.ckpt.sha256)

    def __repr__(self) -> str:  # the default would print the whole blob
        return (f"ModelBlob({self.filename}, {len(self.data)} bytes, sha256={self.sha256[:12]}, "
                f"K={self.samples}, backend={self.backend})")


Generator = Callable[[ModelRequest], ModelBlob]  # what the service calls on a cache miss


def render(request: ModelRequest) -> ModelBlob:
    """Generate the network of a resolved request and export it; raises ``CalibrationUnavailable``
    for ``int8`` without a calibration set (before any work)."""
    ckpt, width, k = request.ckpt, request.width, request.samples
    if request.dtype == "int8":
        calibration_images(ckpt.manifest.dataset)
    state = folded_state(ckpt, width, k, request.backend, request.precision)
    if request.format == "onnx":
        # int8 activations are calibrated on the shipped images (service.export.calibration).
        ranges = activation_ranges(state, ckpt.manifest) if request.dtype == "int8" else None
        data = build_onnx(state, ckpt.manifest, width, request.dtype, ckpt.sha256, k, ranges)
    else:
        data = safetensors_bytes(state, ckpt, width, request.dtype, k)
    return ModelBlob(request, data, hashlib.sha256(data).hexdigest())


def render_model(
    ckpt: Checkpoint,
    width: int,
    dtype: str = "float32",
    samples: int | None = None,
    backend: str = "auto",
    precision: str = DEFAULT_KERNEL_PRECISION,
    export_format: str = "onnx",
) -> ModelBlob:
    """``render`` of a request checked here (``resolve``): for callers that checked nothing.

    Raises ``WidthOutOfRange``/``InvalidParameter`` for a bad request and
    ``kernels.dispatch.BackendUnavailable`` when a forced backend cannot run here.
    """
    return render(resolve(ckpt, width, dtype, samples, backend, precision, export_format))


def safetensors_bytes(state: dict[str, torch.Tensor], ckpt: Checkpoint, width: int, dtype: str, k: int) -> bytes:
    """The folded state_dict (BN already in the conv biases, the layout ``service.archs.folded_model``
    loads) as a safetensors file, with the request in its metadata."""
    from safetensors.torch import save

    m = ckpt.manifest
    meta = {"arch": m.arch, "scope": m.scope, "width": width, "dtype": dtype, "samples": k,
            "checkpoint_sha256": ckpt.sha256, "generator_version": GENERATOR_VERSION}
    return save({name: w.to(SAFETENSORS_DTYPES[dtype]).contiguous() for name, w in state.items()},
                metadata={"neumeta": json.dumps(meta)})
