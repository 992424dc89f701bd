"""Folded ResNet20 state_dict -> ONNX bytes, built directly with ``onnx.helper`` (no tracing).

The graph is the folded network of ``service.archs.resnet20``:

    input (B, C, H, W) -> Conv 3x3 + Relu                              stem
      -> 9 x [Conv3x3(stride) + Relu -> Conv3x3 -> Add(shortcut) -> Relu]
      -> GlobalAveragePool -> Flatten -> Gemm (fc)  -> logits (B, classes)

Only the weight storage (and, for ``int8``, the activations' Q/DQ) changes with ``dtype``; inputs
and outputs are always float32. ``service.export.graph`` says what each dtype stores.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

import onnx
import torch
from onnx import TensorProto, helper

from service.archs import param_count, tensor_specs
from service.archs.resnet20 import block_io, block_names
from service.constants import DTYPES
from service.export.graph import Graph, Range
from service.hypernet.checkpoint import Manifest

OPSET = 17
IR_VERSION = 8  # the IR version that opset 17 shipped with; older runtimes accept it
# Bumped whenever the bytes for a given (checkpoint, request) change: it is part of cache keys.
GENERATOR_VERSION = "g3"  # g3: generation at one torch thread (service.constants.GENERATION_THREADS)
INPUT_NAME, OUTPUT_NAME = "input", "logits"
MODEL_CARD = "GET /archs of the service that served this file (entry {arch}); format: docs/API.md"


def _conv(g: Graph, state: dict[str, torch.Tensor], prefix: str, x: str, stride: int, out: str) -> str:
    w = state[f"{prefix}.weight"]
    k = int(w.shape[-1])
    weight, bias = g.params(prefix, w, state[f"{prefix}.bias"], x)
    return g.node("Conv", [x, weight, bias], out, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)


def activation_names(state: dict[str, torch.Tensor]) -> list[str]:
    """The float activations an ``int8`` model quantizes (what calibration must give a range for),
    in graph order: each feeds a Conv, an Add or the Gemm."""
    names = [INPUT_NAME, "stem.relu"]
    for name in block_names():
        names += [f"{name}.relu1", f"{name}.conv2.out"]
        if f"{name}.shortcut.weight" in state:
            names.append(f"{name}.shortcut.out")
        names.append(f"{name}.out")
    return [*names, "flatten"]


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
        "neumeta.dataset": manifest.dataset,
        "neumeta.preprocess": json.dumps(manifest.preprocess.model_dump()),
        "neumeta.labels": json.dumps(manifest.labels),
        "neumeta.dtype": dtype,
        "neumeta.samples": str(samples),
        "neumeta.scope": manifest.scope.value,
        "neumeta.generator_version": GENERATOR_VERSION,
    }


def model_version(checkpoint_sha: str) -> int:
    """ModelProto.model_version: 60 bits of SHA-256(checkpoint, generator), so it changes with either.
    Bit 59 is always set, so the varint is always 9 bytes and ``predict_size`` stays exact."""
    digest = hashlib.sha256(f"{checkpoint_sha}:{GENERATOR_VERSION}".encode()).digest()
    return (1 << 59) | (int.from_bytes(digest[:8], "big") & ((1 << 59) - 1))


def doc_string(manifest: Manifest, width: int, dtype: str, checkpoint_sha: str) -> str:
    calibrated = " Activations calibrated on shipped training images." if dtype == "int8" else ""
    return (f"NeuMeta {manifest.arch} ({manifest.family}, scope {manifest.scope.value}) at width {width}, "
            f"{dtype} storage, {manifest.dataset}; generated from checkpoint {checkpoint_sha[:12]} by generator "
            f"{GENERATOR_VERSION}.{calibrated} Model card: " + MODEL_CARD.format(arch=manifest.arch))


def build_model(
    state: dict[str, torch.Tensor], manifest: Manifest, width: int, dtype: str, checkpoint_sha: str, samples: int,
    ranges: dict[str, Range] | None = None,
) -> onnx.ModelProto:
    """The ONNX ModelProto of a folded state_dict (see ``build_onnx`` for the bytes). ``int8`` needs
    ``ranges``: the calibration (min, max) of every name in ``activation_names(state)``."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    _check_state(state, manifest, width)
    g = Graph(dtype, ranges)

    def conv(prefix: str, x: str, stride: int, out: str) -> str:
        return _conv(g, state, prefix, x, stride, out)

    # Each g.activation() is a Q/DQ pair for int8 and a no-op otherwise. Relu stays in the graph for
    # every dtype; onnxruntime folds a Relu before a zero-point-0 Q into the integer kernel's clamp.
    x = g.activation(g.node("Relu", [conv("conv1", g.activation(INPUT_NAME), 1, "stem.conv")], "stem.relu"))
    for i, name in enumerate(block_names()):
        _, _, stride = block_io(i)
        h = g.activation(g.node("Relu", [conv(f"{name}.conv1", x, stride, f"{name}.conv1.out")], f"{name}.relu1"))
        h = g.activation(conv(f"{name}.conv2", h, 1, f"{name}.conv2.out"))
        skip = x
        if f"{name}.shortcut.weight" in state:
            skip = g.activation(conv(f"{name}.shortcut", x, stride, f"{name}.shortcut.out"))
        x = g.activation(g.node("Relu", [g.node("Add", [h, skip], f"{name}.add")], f"{name}.out"))
    x = g.activation(g.node("Flatten", [g.node("GlobalAveragePool", [x], "pool")], "flatten", axis=1))
    g.node("Gemm", [x, *g.params("fc", state["fc.weight"], state["fc.bias"], x)], OUTPUT_NAME, transB=1)

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
        model_version=model_version(checkpoint_sha), doc_string=doc_string(manifest, width, dtype, checkpoint_sha),
    )
    helper.set_model_props(model, metadata(manifest, width, dtype, checkpoint_sha, samples))
    return model


def build_onnx(
    state: dict[str, torch.Tensor], manifest: Manifest, width: int, dtype: str, checkpoint_sha: str, samples: int,
    ranges: dict[str, Range] | None = None,
) -> bytes:
    """Serialized ONNX model of the folded ``state`` at ``width`` (float32 IO, weights in ``dtype``)."""
    return build_model(state, manifest, width, dtype, checkpoint_sha, samples, ranges).SerializeToString()


@lru_cache(maxsize=4096)
def _predict_size(manifest_json: str, width: int, dtype: str, samples: int) -> int:
    manifest = Manifest.model_validate_json(manifest_json)
    specs = tensor_specs(manifest.scope, width, manifest.in_channels, manifest.num_classes)
    state = {s.name: torch.zeros(s.shape) for s in specs}
    # Sizes depend only on shapes and metadata lengths (a SHA-256 hex is always 64 characters, every
    # quantization parameter is a fixed-size raw tensor), so placeholder ranges size int8 exactly.
    ranges = {name: (0.0, 1.0) for name in activation_names(state)} if dtype == "int8" else None
    return len(build_onnx(state, manifest, width, dtype, "0" * 64, samples, ranges))


def predict_size(manifest: Manifest, width: int, dtype: str, samples: int | None = None) -> int:
    """Exact byte size of ``build_onnx`` at ``width``/``dtype`` (``samples`` defaults to the manifest's)."""
    k = manifest.default_samples if samples is None else samples
    return _predict_size(manifest.model_dump_json(), width, dtype, k)
