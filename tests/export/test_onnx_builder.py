"""ONNX export: valid graphs that onnxruntime runs to the torch folded model's logits, with metadata."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from service.archs import folded_model, param_count
from service.export import DTYPES, GENERATOR_VERSION, OPSET, build_onnx, predict_size
from service.hypernet import generate, load_checkpoint
from tests.factories import tiny_checkpoint

# Worst error relative to max |logit| measured over 4 random tiny checkpoints x widths 1/17/33/64:
# float16 4.3e-4, int8 4.8e-3 (tests/export, 2-core CPU dev box). Limits leave ~5x headroom.
RELATIVE_TOLERANCE = {"float32": None, "float16": 2e-3, "int8": 2e-2}
FLOAT32_ATOL = 1e-4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return load_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("export") / "tiny.safetensors"))


@pytest.fixture(scope="module")
def states(ckpt):
    return {w: generate(ckpt, w) for w in (1, 17, 33, 64)}


def _run(data: bytes, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x.numpy()})[0]


def _torch_logits(state, x):
    with torch.no_grad():
        return folded_model(state, 1, 10)(x).numpy()


@pytest.mark.parametrize("width", [1, 17, 33, 64])
@pytest.mark.parametrize("batch", [1, 3])
def test_float32_matches_torch(ckpt, states, width, batch):
    data = build_onnx(states[width], ckpt.manifest, width, "float32", ckpt.sha256, 1)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(width + batch))
    got, expected = _run(data, x), _torch_logits(states[width], x)
    assert got.shape == (batch, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT32_ATOL)


@pytest.mark.parametrize("dtype", ["float16", "int8"])
@pytest.mark.parametrize("width", [1, 17, 64])
def test_compressed_dtypes_stay_close(ckpt, states, dtype, width):
    data = build_onnx(states[width], ckpt.manifest, width, dtype, ckpt.sha256, 1)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(width))
    got, expected = _run(data, x), _torch_logits(states[width], x)
    assert got.dtype == np.float32
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error < RELATIVE_TOLERANCE[dtype]
    assert error > 0  # weights really are stored at lower precision


def test_weight_storage_per_dtype(ckpt, states):
    models = {d: onnx.load_from_string(build_onnx(states[33], ckpt.manifest, 33, d, ckpt.sha256, 1)) for d in DTYPES}
    kinds = {d: {i.data_type for i in m.graph.initializer} for d, m in models.items()}
    assert kinds["float32"] == {TensorProto.FLOAT}
    assert kinds["float16"] == {TensorProto.FLOAT16}
    assert kinds["int8"] == {TensorProto.INT8, TensorProto.FLOAT}
    q = models["int8"]
    inits = {i.name: i for i in q.graph.initializer}
    fc_scale = onnx.numpy_helper.to_array(inits["fc.weight.scale"])
    assert fc_scale.shape == (10,) and (fc_scale > 0).all()  # one scale per output channel
    conv = inits["layer3.2.conv1.weight.int8"]
    assert list(conv.dims) == [33, 64, 3, 3]
    assert not onnx.numpy_helper.to_array(inits["layer3.2.conv1.weight.zero_point"]).any()
    assert inits["layer3.2.conv1.bias"].data_type == TensorProto.FLOAT  # biases stay fp32
    dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dq) == 22  # stem + 9 blocks x 2 convs + 2 shortcut convs + the fc Gemm
    assert len(dq) == sum(n.op_type in ("Conv", "Gemm") for n in q.graph.node)
    for model in models.values():  # IO is float32 whatever the storage
        for v in (*model.graph.input, *model.graph.output):
            assert v.type.tensor_type.elem_type == TensorProto.FLOAT


def test_signature_and_metadata(ckpt, states):
    model = onnx.load_from_string(build_onnx(states[17], ckpt.manifest, 17, "int8", ckpt.sha256, 7))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 28, 28]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]
    assert model.opset_import[0].version == OPSET and model.producer_name == "neumeta"

    meta = {p.key: p.value for p in model.metadata_props}
    m = ckpt.manifest
    assert meta["neumeta.arch"] == "resnet20"
    assert meta["neumeta.width"] == "17"
    assert int(meta["neumeta.params"]) == param_count(m.scope, 17, 1, 10)
    assert int(meta["neumeta.params"]) == sum(t.numel() for t in states[17].values())
    assert meta["neumeta.checkpoint"] == ckpt.sha256 and len(ckpt.sha256) == 64
    preprocess = json.loads(meta["neumeta.preprocess"])
    assert preprocess["mean"] == [0.286] and preprocess["std"] == [0.353]
    assert preprocess["layout"] == "NCHW" and preprocess["input_shape"] == [1, 28, 28]
    assert preprocess["scale"] == pytest.approx(1 / 255)
    assert json.loads(meta["neumeta.labels"]) == m.labels
    assert meta["neumeta.dtype"] == "int8" and meta["neumeta.samples"] == "7"
    assert meta["neumeta.scope"] == "all" and meta["neumeta.generator_version"] == GENERATOR_VERSION


def test_same_input_same_bytes(ckpt, states):
    a = build_onnx(states[33], ckpt.manifest, 33, "int8", ckpt.sha256, 1)
    b = build_onnx({k: v.clone() for k, v in states[33].items()}, ckpt.manifest, 33, "int8", ckpt.sha256, 1)
    assert a == b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width,samples", [(1, 1), (17, 12), (64, 100)])
def test_predict_size_is_exact(ckpt, states, dtype, width, samples):
    actual = len(build_onnx(states[width], ckpt.manifest, width, dtype, ckpt.sha256, samples))
    assert predict_size(ckpt.manifest, width, dtype, samples) == actual


def test_predict_size_defaults_to_manifest_samples_and_orders_dtypes(ckpt):
    m = ckpt.manifest
    assert predict_size(m, 40, "float32") == predict_size(m, 40, "float32", m.default_samples)
    assert predict_size(m, 40, "int8") < predict_size(m, 40, "float16") < predict_size(m, 40, "float32")
    sizes = [predict_size(m, w, "float32") for w in (8, 16, 32, 64)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_rejects_unknown_dtype_and_wrong_shapes(ckpt, states):
    with pytest.raises(ValueError, match="unknown dtype 'bfloat16'"):
        build_onnx(states[17], ckpt.manifest, 17, "bfloat16", ckpt.sha256, 1)
    wrong_shape = r"layer1.0.conv1.weight has shape \(4, 16, 3, 3\), expected \(8, 16, 3, 3\) at width 33"
    with pytest.raises(ValueError, match=wrong_shape):
        build_onnx(states[17], ckpt.manifest, 33, "float32", ckpt.sha256, 1)
    broken = dict(states[17])
    del broken["fc.bias"]
    with pytest.raises(ValueError, match="fc.bias has shape None"):
        build_onnx(broken, ckpt.manifest, 17, "float32", ckpt.sha256, 1)


def test_rejects_non_finite_and_float16_overflow(ckpt, states):
    bad = dict(states[17])
    bad["layer2.1.conv2.bias"] = bad["layer2.1.conv2.bias"].clone()
    bad["layer2.1.conv2.bias"][3] = float("nan")
    with pytest.raises(ValueError, match="layer2.1.conv2.bias holds NaN or inf"):
        build_onnx(bad, ckpt.manifest, 17, "float32", ckpt.sha256, 1)
    big = dict(states[17])
    big["fc.weight"] = big["fc.weight"] * 0 + 7e4
    with pytest.raises(ValueError, match="fc.weight has values beyond float16's range"):
        build_onnx(big, ckpt.manifest, 17, "float16", ckpt.sha256, 1)
    assert build_onnx(big, ckpt.manifest, 17, "float32", ckpt.sha256, 1)  # fine in float32
