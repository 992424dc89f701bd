"""The one place that turns a request (checkpoint, width, dtype, K, backend) into ONNX bytes.

Both the ``neumeta generate`` command and the HTTP service call ``render_model``; it validates,
generates the folded state_dict, builds the ONNX graph and hashes the result. It is synchronous
and CPU/GPU bound: the service runs it off the event loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kernels.dispatch import BACKENDS, DEFAULT_KERNEL_PRECISION, resolve_backend
from service.archs import param_count
from service.errors import InvalidParameter
from service.export import DTYPES, GENERATOR_VERSION, build_onnx
from service.hypernet.checkpoint import Checkpoint
from service.hypernet.generate import check_request, generate

__all__ = ["GENERATOR_VERSION", "ModelBlob", "check_dtype", "render_model"]


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

    @property
    def filename(self) -> str:
        return f"{self.arch}-w{self.width}-{self.dtype}.onnx"

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
) -> ModelBlob:
    """Generate the network at ``width`` and export it; raises the service's typed errors.

    Raises ``WidthOutOfRange``/``InvalidParameter`` for a bad request and
    ``kernels.dispatch.BackendUnavailable`` when a forced backend cannot run here.
    """
    k = check_request(ckpt, width, samples)
    check_dtype(dtype)
    if backend not in BACKENDS:
        raise InvalidParameter(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    concrete = resolve_backend(backend)
    state = generate(ckpt, width, samples=k, backend=concrete, precision=precision)
    data = build_onnx(state, ckpt.manifest, width, dtype, ckpt.sha256, k)
    m = ckpt.manifest
    return ModelBlob(
        data=data, sha256=hashlib.sha256(data).hexdigest(), arch=m.arch, width=width, dtype=dtype, samples=k,
        params=param_count(m.scope, width, m.in_channels, m.num_classes), checkpoint_sha=ckpt.sha256,
        backend=concrete,
    )
