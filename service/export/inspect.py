"""Read an exported ONNX model back: metadata, parameter count, IO signature, weight dtype."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto

from service.errors import InvalidParameter

# Initializers that are quantization bookkeeping, not parameters of the network.
_QUANT_SUFFIXES = (".scale", ".zero_point")


def _value_info(v: onnx.ValueInfoProto) -> dict[str, Any]:
    t = v.type.tensor_type
    shape = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
    return {"name": v.name, "type": TensorProto.DataType.Name(t.elem_type).lower(), "shape": shape}


def _weight_dtype(model: onnx.ModelProto) -> str:
    kinds = {init.data_type for init in model.graph.initializer}
    if TensorProto.UINT8 in kinds:  # activation zero points: static quantization
        return "int8"
    if TensorProto.INT8 in kinds:
        return "int8-weights"
    if TensorProto.FLOAT16 in kinds:
        return "float16"
    return "float32"


def describe_onnx(data: bytes, where: str = "model") -> dict[str, Any]:
    """JSON-ready summary of serialized ONNX ``data``; ``InvalidParameter`` if it is not ONNX."""
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidParameter(f"{where} is not a readable ONNX model ({exc})") from None
    if not model.graph.node:
        raise InvalidParameter(f"{where} is not an ONNX model (no graph nodes)")
    meta = {p.key: p.value for p in model.metadata_props}
    params = sum(
        math.prod(init.dims) for init in model.graph.initializer if not init.name.endswith(_QUANT_SUFFIXES)
    )
    return {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "dtype": meta.get("neumeta.dtype", _weight_dtype(model)),
        "params": params,
        "inputs": [_value_info(v) for v in model.graph.input],
        "outputs": [_value_info(v) for v in model.graph.output],
        "metadata": meta,
    }
