"""ONNX export: valid graphs that onnxruntime runs to the torch folded model's logits, with metadata."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from service.archs import folded_model, param_count
from service.export import DTYPES, GENERATOR_VERSION, OPSET, build_onnx, onnx_builder, predict_size
from service.export.calibration import activation_ranges
from service.hypernet import generate

# How close int8 and float16 come to float32 is bounded on the shipped checkpoints with real test
# images (tests/export/test_accuracy.py): a random tiny checkpoint's logits say nothing about that.
FLOAT32_ATOL = 1e-4
CONVS = 21  # stem + 9 blocks x 2 + 2 shortcuts


@pytest.fixture(scope="module")
def states(tiny_ckpt):
    return {w: generate(tiny_ckpt, w) for w in (1, 17, 33, 64)}


@pytest.fixture(scope="module")
def ranges(tiny_ckpt, states):
    """int8 calibration ranges per width, from the shipped Fashion-MNIST calibration images."""
    return {w: activation_ranges(state, tiny_ckpt.manifest) for w, state in states.items()}


def _build(tiny_ckpt, states, ranges, width, dtype, samples=1) -> bytes:
    return build_onnx(states[width], tiny_ckpt.manifest, width, dtype, tiny_ckpt.sha256, samples,
                      ranges[width] if dtype == "int8" else None)


def _run(data: bytes, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x.numpy()})[0]


def _torch_logits(state, x):
    with torch.no_grad():
        return folded_model(state, 1, 10)(x).numpy()


@pytest.mark.parametrize("width", [1, 17, 33, 64])
@pytest.mark.parametrize("batch", [1, 3])
def test_float32_matches_torch(tiny_ckpt, states, width, batch):
    data = build_onnx(states[width], tiny_ckpt.manifest, width, "float32", tiny_ckpt.sha256, 1)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(width + batch))
    got, expected = _run(data, x), _torch_logits(states[width], x)
    assert got.shape == (batch, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT32_ATOL)


@pytest.mark.parametrize("dtype", ["float16", "int8", "int8-weights"])
@pytest.mark.parametrize("width", [1, 17, 64])
def test_compressed_dtypes_are_valid_and_really_compressed(tiny_ckpt, states, ranges, dtype, width):
    data = _build(tiny_ckpt, states, ranges, width, dtype)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(width))
    got, expected = _run(data, x), _torch_logits(states[width], x)
    assert got.shape == (3, 10) and got.dtype == np.float32 and np.isfinite(got).all()
    assert not np.array_equal(got, expected)  # weights (and for int8 activations) really are rounded


def test_weight_storage_per_dtype(tiny_ckpt, states, ranges):
    models = {d: onnx.load_from_string(_build(tiny_ckpt, states, ranges, 33, d)) for d in DTYPES}
    kinds = {d: {i.data_type for i in m.graph.initializer} for d, m in models.items()}
    assert kinds["float32"] == {TensorProto.FLOAT}
    assert kinds["float16"] == {TensorProto.FLOAT16}
    assert kinds["int8-weights"] == {TensorProto.INT8, TensorProto.FLOAT}
    assert kinds["int8"] == {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32, TensorProto.FLOAT}
    for dtype in ("int8", "int8-weights"):
        q = models[dtype]
        inits = {i.name: i for i in q.graph.initializer}
        fc_scale = onnx.numpy_helper.to_array(inits["fc.weight.scale"])
        assert fc_scale.shape == (10,) and (fc_scale > 0).all()  # one scale per output channel
        conv = inits["layer3.2.conv1.weight.q"]
        assert list(conv.dims) == [33, 64, 3, 3] and conv.data_type == TensorProto.INT8
        assert not onnx.numpy_helper.to_array(inits["layer3.2.conv1.weight.zero_point"]).any()
        weight_dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.output[0].endswith(".weight")]
        assert len(weight_dq) == CONVS + 1 == sum(n.op_type in ("Conv", "Gemm") for n in q.graph.node)
    weights_only = {i.name: i for i in models["int8-weights"].graph.initializer}
    assert weights_only["layer3.2.conv1.bias"].data_type == TensorProto.FLOAT  # biases stay fp32
    assert not any(n.op_type == "QuantizeLinear" for n in models["int8-weights"].graph.node)
    # Static int8: every activation feeding a Conv/Add/Gemm is quantized, biases are int32.
    static = {i.name: i for i in models["int8"].graph.initializer}
    assert static["layer3.2.conv1.bias.q"].data_type == TensorProto.INT32
    quantized = [n.input[0] for n in models["int8"].graph.node if n.op_type == "QuantizeLinear"]
    assert quantized == onnx_builder.activation_names(states[33])
    for model in models.values():  # IO is float32 whatever the storage
        for v in (*model.graph.input, *model.graph.output):
            assert v.type.tensor_type.elem_type == TensorProto.FLOAT


def _optimized_ops(data: bytes, tmp_path, **config) -> dict[str, int]:
    """Op counts of the graph onnxruntime actually runs (level-all optimisations, CPU)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    ops: dict[str, int] = {}
    for node in onnx.load(options.optimized_model_filepath).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


def test_static_int8_runs_integer_convolutions(tiny_ckpt, states, ranges, tmp_path):
    """The point of int8: onnxruntime fuses every Conv (and its Relu) into an integer QLinearConv;
    the weight-only format keeps float Convs, folded to float weights only with disable_quant_qdq."""
    static = _optimized_ops(_build(tiny_ckpt, states, ranges, 64, "int8"), tmp_path)
    assert static.get("QLinearConv") == CONVS and "Conv" not in static and "Relu" not in static
    weights_only = _optimized_ops(_build(tiny_ckpt, states, ranges, 64, "int8-weights"), tmp_path)
    assert "QLinearConv" not in weights_only and weights_only.get("DequantizeLinear") == CONVS + 1
    folded = _optimized_ops(_build(tiny_ckpt, states, ranges, 64, "int8-weights"), tmp_path,
                            **{"session.disable_quant_qdq": "1"})
    assert "DequantizeLinear" not in folded and "QLinearConv" not in folded


def test_signature_and_metadata(tiny_ckpt, states, ranges):
    model = onnx.load_from_string(_build(tiny_ckpt, states, ranges, 17, "int8", samples=7))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 28, 28]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]
    assert model.opset_import[0].version == OPSET and model.producer_name == "neumeta"

    meta = {p.key: p.value for p in model.metadata_props}
    m = tiny_ckpt.manifest
    assert meta["neumeta.arch"] == "resnet20"
    assert meta["neumeta.width"] == "17"
    assert int(meta["neumeta.params"]) == param_count(m.scope, 17, 1, 10)
    assert int(meta["neumeta.params"]) == sum(t.numel() for t in states[17].values())
    assert meta["neumeta.checkpoint"] == tiny_ckpt.sha256 and len(tiny_ckpt.sha256) == 64
    preprocess = json.loads(meta["neumeta.preprocess"])
    assert preprocess["mean"] == [0.286] and preprocess["std"] == [0.353]
    assert preprocess["layout"] == "NCHW" and preprocess["input_shape"] == [1, 28, 28]
    assert preprocess["scale"] == pytest.approx(1 / 255)
    assert json.loads(meta["neumeta.labels"]) == m.labels
    assert meta["neumeta.dtype"] == "int8" and meta["neumeta.samples"] == "7"
    assert meta["neumeta.scope"] == "all" and meta["neumeta.generator_version"] == GENERATOR_VERSION
    assert meta["neumeta.dataset"] == "fashion-mnist"
    # The doc string names the arch, width, checkpoint and where the model card lives.
    for part in ("resnet20", "width 17", tiny_ckpt.sha256[:12], "GET /archs", "docs/API.md", "calibrated"):
        assert part in model.doc_string


def test_model_version_changes_with_checkpoint_and_generator(tiny_ckpt, states, monkeypatch):
    def version(sha: str) -> int:
        return onnx.load_from_string(build_onnx(states[1], tiny_ckpt.manifest, 1, "float32", sha, 1)).model_version

    first = version(tiny_ckpt.sha256)
    assert first > 0 and first == version(tiny_ckpt.sha256)
    assert version("f" * 64) != first
    monkeypatch.setattr(onnx_builder, "GENERATOR_VERSION", "g-next")
    assert version(tiny_ckpt.sha256) != first


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_input_same_bytes(tiny_ckpt, states, dtype):
    """Calibration included: the same state gives the same ranges and the same file."""
    clone = {k: v.clone() for k, v in states[33].items()}
    again = activation_ranges(clone, tiny_ckpt.manifest) if dtype == "int8" else None
    a = _build(tiny_ckpt, states, {33: activation_ranges(states[33], tiny_ckpt.manifest)}, 33, dtype)
    assert a == build_onnx(clone, tiny_ckpt.manifest, 33, dtype, tiny_ckpt.sha256, 1, again)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width,samples", [(1, 1), (17, 12), (64, 100)])
def test_predict_size_is_exact(tiny_ckpt, states, ranges, dtype, width, samples):
    actual = len(_build(tiny_ckpt, states, ranges, width, dtype, samples))
    assert predict_size(tiny_ckpt.manifest, width, dtype, samples) == actual
    for sha in ("0" * 64, "f" * 64):  # whatever the checkpoint (model_version, doc string)
        assert len(build_onnx(states[width], tiny_ckpt.manifest, width, dtype, sha, samples,
                              ranges[width] if dtype == "int8" else None)) == actual


def test_predict_size_defaults_to_manifest_samples_and_orders_dtypes(tiny_ckpt):
    m = tiny_ckpt.manifest
    assert predict_size(m, 40, "float32") == predict_size(m, 40, "float32", m.default_samples)
    assert (predict_size(m, 40, "int8-weights") < predict_size(m, 40, "int8") < predict_size(m, 40, "float16")
            < predict_size(m, 40, "float32"))
    sizes = [predict_size(m, w, "float32") for w in (8, 16, 32, 64)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_rejects_unknown_dtype_and_wrong_shapes(tiny_ckpt, states, ranges):
    with pytest.raises(ValueError, match="unknown dtype 'bfloat16'"):
        build_onnx(states[17], tiny_ckpt.manifest, 17, "bfloat16", tiny_ckpt.sha256, 1)
    with pytest.raises(ValueError, match="dtype int8 needs activation ranges"):
        build_onnx(states[17], tiny_ckpt.manifest, 17, "int8", tiny_ckpt.sha256, 1)
    partial = {k: v for k, v in ranges[17].items() if k != "layer2.0.shortcut.out"}
    with pytest.raises(ValueError, match="no calibration range for activation layer2.0.shortcut.out"):
        build_onnx(states[17], tiny_ckpt.manifest, 17, "int8", tiny_ckpt.sha256, 1, partial)
    wrong_shape = r"layer1.0.conv1.weight has shape \(4, 16, 3, 3\), expected \(8, 16, 3, 3\) at width 33"
    with pytest.raises(ValueError, match=wrong_shape):
        build_onnx(states[17], tiny_ckpt.manifest, 33, "float32", tiny_ckpt.sha256, 1)
    broken = dict(states[17])
    del broken["fc.bias"]
    with pytest.raises(ValueError, match="fc.bias has shape None"):
        build_onnx(broken, tiny_ckpt.manifest, 17, "float32", tiny_ckpt.sha256, 1)


def test_rejects_non_finite_and_float16_overflow(tiny_ckpt, states):
    bad = dict(states[17])
    bad["layer2.1.conv2.bias"] = bad["layer2.1.conv2.bias"].clone()
    bad["layer2.1.conv2.bias"][3] = float("nan")
    with pytest.raises(ValueError, match="layer2.1.conv2.bias holds NaN or inf"):
        build_onnx(bad, tiny_ckpt.manifest, 17, "float32", tiny_ckpt.sha256, 1)
    big = dict(states[17])
    big["fc.weight"] = big["fc.weight"] * 0 + 7e4
    with pytest.raises(ValueError, match="fc.weight has values beyond float16's range"):
        build_onnx(big, tiny_ckpt.manifest, 17, "float16", tiny_ckpt.sha256, 1)
    assert build_onnx(big, tiny_ckpt.manifest, 17, "float32", tiny_ckpt.sha256, 1)  # fine in float32
