"""Reading an exported model back: metadata, parameter count, IO and dtype."""

import hashlib

import pytest
from onnx import TensorProto, helper

from service.errors import InvalidParameter
from service.export import DTYPES
from service.export.inspect import describe_onnx
from service.hypernet import load_checkpoint
from service.serving.pipeline import render_model


@pytest.mark.parametrize("dtype", DTYPES)
def test_describe_an_export(tiny_ckpt_path, dtype):
    ckpt = load_checkpoint(tiny_ckpt_path)
    data = render_model(ckpt, 12, dtype).data
    info = describe_onnx(data)
    assert info["bytes"] == len(data) and info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["dtype"] == dtype
    # Quantization scales and zero points are not parameters: the count matches every dtype.
    assert info["params"] == int(info["metadata"]["neumeta.params"])
    assert info["inputs"] == [{"name": "input", "type": "float", "shape": ["batch", 1, 28, 28]}]
    assert info["outputs"] == [{"name": "logits", "type": "float", "shape": ["batch", 10]}]
    assert info["opset"] == 17 and info["producer"].startswith("neumeta")


def test_foreign_model_dtype_is_inferred():
    w = helper.make_tensor("w", TensorProto.FLOAT16, [2], [1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["w"], ["y"], to=TensorProto.FLOAT)], "g", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=[w],
    )
    info = describe_onnx(helper.make_model(graph).SerializeToString())
    assert info["dtype"] == "float16" and info["params"] == 2 and info["metadata"] == {}


@pytest.mark.parametrize("data", [b"", b"\xff\xfe not protobuf \x00" * 8])
def test_not_onnx(data):
    with pytest.raises(InvalidParameter, match="m.onnx is not"):
        describe_onnx(data, where="m.onnx")


@pytest.mark.parametrize("kinds,expected", [
    ([TensorProto.INT8, TensorProto.FLOAT], "int8-weights"),  # int8 weights only
    ([TensorProto.INT8, TensorProto.UINT8, TensorProto.FLOAT], "int8"),  # plus activation zero points
])
def test_foreign_quantized_models_are_told_apart(kinds, expected):
    inits = [helper.make_tensor(f"t{i}", kind, [1], [1]) for i, kind in enumerate(kinds)]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["t0"], ["y"])], "g", [],
        [helper.make_tensor_value_info("y", kinds[0], [1])], initializer=inits,
    )
    assert describe_onnx(helper.make_model(graph).SerializeToString())["dtype"] == expected
