"""render_model: request -> validated, generated, exported, hashed ModelBlob."""

import hashlib

import onnx
import pytest

from kernels.dispatch import BackendUnavailable
from service.archs import param_count
from service.errors import InvalidParameter, WidthOutOfRange
from service.export import predict_size
from service.serving.pipeline import ModelBlob, render_model


def test_render_model(tiny_ckpt):
    blob = render_model(tiny_ckpt, 24, dtype="float16", samples=3)
    assert isinstance(blob, ModelBlob)
    assert blob.sha256 == hashlib.sha256(blob.data).hexdigest()
    assert (blob.arch, blob.width, blob.dtype, blob.samples) == ("resnet20", 24, "float16", 3)
    assert blob.params == param_count("all", 24, 1, 10)
    assert blob.checkpoint_sha == tiny_ckpt.sha256
    assert blob.backend == "torch"  # "auto" resolves to a concrete backend (no CUDA here)
    assert blob.filename == "resnet20-w24-float16.onnx"
    assert len(blob.data) == predict_size(tiny_ckpt.manifest, 24, "float16", 3)
    meta = {p.key: p.value for p in onnx.load_from_string(blob.data).metadata_props}
    assert meta["neumeta.samples"] == "3" and meta["neumeta.width"] == "24"
    assert "bytes" in repr(blob) and len(repr(blob)) < 200  # never dumps the blob


def test_deterministic_and_default_samples(tiny_ckpt):
    a, b = render_model(tiny_ckpt, 9), render_model(tiny_ckpt, 9, samples=tiny_ckpt.manifest.default_samples)
    assert a.data == b.data and a.samples == tiny_ckpt.manifest.default_samples
    assert render_model(tiny_ckpt, 9, samples=2).sha256 != a.sha256


@pytest.mark.parametrize("kwargs,error,match", [
    ({"width": 0}, WidthOutOfRange, "allowed range"),
    ({"width": 65}, WidthOutOfRange, "allowed range"),
    ({"width": 8, "samples": 0}, InvalidParameter, "samples"),
    ({"width": 8, "samples": 101}, InvalidParameter, "samples"),
    ({"width": 8, "dtype": "bf16"}, InvalidParameter, "dtype must be one of float32, float16, int8, int8-weights"),
    ({"width": 8, "backend": "cuda"}, InvalidParameter, "backend must be one of"),
])
def test_bad_requests(tiny_ckpt, kwargs, error, match):
    with pytest.raises(error, match=match):
        render_model(tiny_ckpt, **kwargs)


def test_forced_triton_without_cuda_is_an_error(tiny_ckpt, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present, so triton is available")
    with pytest.raises(BackendUnavailable, match="triton"):
        render_model(tiny_ckpt, 8, backend="triton")
