"""Folded ResNet20 state_dict -> ONNX bytes, built directly with ``onnx.helper`` (no tracing).

The graph is the folded network of ``service.archs.resnet20``:

    input (B, C, H, W) -> Conv 3x3 + Relu                              stem
      -> 9 x [Conv3x3(stride) + Relu -> Conv3x3 -> Add(shortcut) -> Relu]
      -> GlobalAveragePool -> Flatten -> Gemm (fc)  -> logits (B, classes)

Only the weight storage changes with ``dtype``; inputs and outputs are always float32:
- ``float32``: plain initializers.
- ``float16``: fp16 initializers, each followed by a ``Cast`` to float32: half the file, same IO.
  onnxruntime's CPU provider has no fp16 Conv kernel on x86 (checked with ORT 1.32: it wraps an
  fp16 Conv in inserted Casts and computes in fp32), so an fp16 compute graph would buy nothing
  there; our casts act on constants and are folded away when a session loads.
- ``int8``: weight-only QDQ. Conv/Gemm weights are int8 with one symmetric float scale per output
  channel (zero point 0), dequantized by ``DequantizeLinear(axis=0)``; biases stay float32.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from service.archs import param_count, tensor_specs
from service.archs.resnet20 import block_io, block_names
from service.hypernet.checkpoint import Manifest

DTYPES = ("float32", "float16", "int8")
OPSET = 17
IR_VERSION = 8  # the IR version that opset 17 shipped with; older runtimes accept it
# Bumped whenever the bytes for a given (checkpoint, request) change: it is part of cache keys.
GENERATOR_VERSION = "g1"
INPUT_NAME, OUTPUT_NAME = "input", "logits"
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


class _Graph:
    """Accumulates nodes and initializers; ``weight``/``bias`` return the float32 value name."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def bias(self, name: str, tensor: torch.Tensor) -> str:
        array = _finite_array(name, tensor)
        if self.dtype == "float16":
            if array.size and np.abs(array).max() > FLOAT16_MAX:  # would silently become inf
                raise ValueError(f"{name} has values beyond float16's range; export it as float32")
            fp16 = self._init(f"{name}.fp16", array.astype(np.float16))
            return self.node("Cast", [fp16], name, to=TensorProto.FLOAT)
        return self._init(name, array)

    def weight(self, name: str, tensor: torch.Tensor) -> str:
        if self.dtype != "int8":
            return self.bias(name, tensor)  # float32 / float16 store weights like biases
        array = _finite_array(name, tensor)
        q, scale = _quantize_per_channel(array)
        inputs = [self._init(f"{name}.int8", q), self._init(f"{name}.scale", scale),
                  self._init(f"{name}.zero_point", np.zeros(scale.shape, np.int8))]
        return self.node("DequantizeLinear", inputs, name, axis=0)


def _finite_array(name: str, tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().float().numpy()
    if not np.isfinite(array).all():  # numpy: ~10x cheaper per call than torch.isfinite here
        raise ValueError(f"state tensor {name} holds NaN or inf")
    return array


def _quantize_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (axis 0): w ~= q * scale, q in [-127, 127]."""
    absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    # An all-zero channel still needs a positive scale; its q is 0 whatever the scale.
    scale = (np.maximum(absmax, 1e-12) / 127.0).astype(np.float32)  # (Cout,)
    q = np.clip(np.rint(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
    return q, scale


def _conv(g: _Graph, state: dict[str, torch.Tensor], prefix: str, x: str, stride: int, out: str) -> str:
    w = state[f"{prefix}.weight"]
    k = int(w.shape[-1])
    return g.node(
        "Conv", [x, g.weight(f"{prefix}.weight", w), g.bias(f"{prefix}.bias", state[f"{prefix}.bias"])], out,
        kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
    )


def _check_state(state: dict[str, torch.Tensor], manifest: Manifest, width: int) -> None:
    # The state comes from generate(); a mismatch is a bug upstream, so say exactly where.
    for spec in tensor_specs(manifest.scope, width, manifest.in_channels, manifest.num_classes):
        got = state.get(spec.name)
        if got is None or tuple(got.shape) != spec.shape:
            shape = None if got is None else tuple(got.shape)
            raise ValueError(f"state tensor {spec.name} has shape {shape}, expected {spec.shape} at width {width}")


def metadata(manifest: Manifest, width: int, dtype: str, checkpoint_sha: str, samples: int) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (keys are part of the contract)."""
    return {
        "neumeta.arch": manifest.arch,
        "neumeta.width": str(width),
        "neumeta.params": str(param_count(manifest.scope, width, manifest.in_channels, manifest.num_classes)),
        "neumeta.checkpoint": checkpoint_sha,
        "neumeta.preprocess": json.dumps(manifest.preprocess.model_dump()),
        "neumeta.labels": json.dumps(manifest.labels),
        "neumeta.dtype": dtype,
        "neumeta.samples": str(samples),
        "neumeta.scope": manifest.scope.value,
        "neumeta.generator_version": GENERATOR_VERSION,
    }


def build_model(
    state: dict[str, torch.Tensor], manifest: Manifest, width: int, dtype: str, checkpoint_sha: str, samples: int
) -> onnx.ModelProto:
    """The ONNX ModelProto of a folded state_dict (see ``build_onnx`` for the bytes)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    _check_state(state, manifest, width)
    g = _Graph(dtype)
    x = g.node("Relu", [_conv(g, state, "conv1", INPUT_NAME, 1, "stem.conv")], "stem.relu")
    for i, name in enumerate(block_names()):
        _, _, stride = block_io(i)
        h = g.node("Relu", [_conv(g, state, f"{name}.conv1", x, stride, f"{name}.conv1.out")], f"{name}.relu1")
        h = _conv(g, state, f"{name}.conv2", h, 1, f"{name}.conv2.out")
        skip = x
        if f"{name}.shortcut.weight" in state:
            skip = _conv(g, state, f"{name}.shortcut", x, stride, f"{name}.shortcut.out")
        x = g.node("Relu", [g.node("Add", [h, skip], f"{name}.add")], f"{name}.out")
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "pool")], "flatten", axis=1)
    g.node("Gemm", [x, g.weight("fc.weight", state["fc.weight"]), g.bias("fc.bias", state["fc.bias"])],
           OUTPUT_NAME, transB=1)

    c, (h_in, w_in) = manifest.in_channels, manifest.input_size
    graph = helper.make_graph(
        g.nodes, f"{manifest.arch}-w{width}-{dtype}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", c, h_in, w_in])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", manifest.num_classes])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="neumeta", producer_version=GENERATOR_VERSION,
    )
    helper.set_model_props(model, metadata(manifest, width, dtype, checkpoint_sha, samples))
    return model


def build_onnx(
    state: dict[str, torch.Tensor], manifest: Manifest, width: int, dtype: str, checkpoint_sha: str, samples: int
) -> bytes:
    """Serialized ONNX model of the folded ``state`` at ``width`` (float32 IO, weights in ``dtype``)."""
    return build_model(state, manifest, width, dtype, checkpoint_sha, samples).SerializeToString()


@lru_cache(maxsize=4096)
def _predict_size(manifest_json: str, width: int, dtype: str, samples: int) -> int:
    manifest = Manifest.model_validate_json(manifest_json)
    specs = tensor_specs(manifest.scope, width, manifest.in_channels, manifest.num_classes)
    state = {s.name: torch.zeros(s.shape) for s in specs}
    # Sizes depend only on shapes and metadata lengths; a SHA-256 hex is always 64 characters.
    return len(build_onnx(state, manifest, width, dtype, "0" * 64, samples))


def predict_size(manifest: Manifest, width: int, dtype: str, samples: int | None = None) -> int:
    """Exact byte size of ``build_onnx`` at ``width``/``dtype`` (``samples`` defaults to the manifest's)."""
    k = manifest.default_samples if samples is None else samples
    return _predict_size(manifest.model_dump_json(), width, dtype, k)
