"""Interop: every served dtype converts to onnxruntime's mobile ``.ort`` format and runs with the
same accuracy; float16 keeps its fp16 weights with the conversion docs/API.md gives for it."""

import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from service.export import DTYPES
from service.export.evaluate import load_test_split, predictions, session
from service.hypernet import load_checkpoint
from service.serving.pipeline import render_model
from service.settings import SHIPPED_CHECKPOINTS
from service.training.evaluate import percent_correct

pytest.importorskip("onnxruntime.tools.convert_onnx_models_to_ort")  # skip only when the tool is missing
pytestmark = pytest.mark.slow

WIDTH, TEST_IMAGES = 16, 2000
ONE_IMAGE_PT = 100 / TEST_IMAGES


def convert(model: Path, out_dir: Path) -> Path:
    """ONNX Runtime's converter, as docs/API.md gives it for float32, int8 and int8-weights."""
    subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", "--output_dir",
                    str(out_dir), str(model)], check=True, capture_output=True)
    return out_dir / model.with_suffix(".ort").name


def convert_keeping_float16(model: Path, out: Path) -> Path:
    """The float16 conversion docs/API.md gives: save without graph optimizations, so constant folding
    does not turn the fp16 weights and their Casts into float32 weights."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.optimized_model_filepath = str(out)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return out


@pytest.fixture(scope="module")
def shipped():
    ckpt = load_checkpoint(SHIPPED_CHECKPOINTS / "resnet20-fmnist-all.safetensors")
    return ckpt, load_test_split(ckpt.manifest, limit=TEST_IMAGES)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_converts_to_ort_and_keeps_its_accuracy(shipped, tmp_path, dtype):
    ckpt, (x, labels) = shipped
    model = tmp_path / f"m-{dtype}.onnx"
    model.write_bytes(render_model(ckpt, WIDTH, dtype).data)
    converted = convert(model, tmp_path / "ort")
    assert converted.read_bytes()[4:8] == b"ORTM"  # the flatbuffer's file identifier
    fold = dtype == "int8-weights"
    served, mobile = (predictions(session(path, fold_qdq=fold), x) for path in (model, converted))
    assert abs(percent_correct(mobile == labels) - percent_correct(served == labels)) <= ONE_IMAGE_PT
    assert percent_correct(mobile == served) >= 100 - ONE_IMAGE_PT


def test_float16_stays_half_size_with_the_documented_conversion(shipped, tmp_path):
    ckpt, (x, labels) = shipped
    models = {}
    for dtype in ("float32", "float16"):
        models[dtype] = tmp_path / f"m-{dtype}.onnx"
        models[dtype].write_bytes(render_model(ckpt, WIDTH, dtype).data)
    float32_ort = convert(models["float32"], tmp_path / "plain").stat().st_size
    # ~30 KB: what the .ort container adds to the same float32 graph (its own node and type tables).
    format_overhead = (convert_keeping_float16(models["float32"], tmp_path / "m-float32.ort").stat().st_size
                       - models["float32"].stat().st_size)
    # The plain converter folds each weight's Cast into a float32 weight: the float16 file doubles.
    assert convert(models["float16"], tmp_path / "plain").stat().st_size > 0.95 * float32_ort
    kept = convert_keeping_float16(models["float16"], tmp_path / "m-float16.ort").stat().st_size
    # fp16 weights kept: only the container's overhead (and the Casts' node entries) is added.
    assert kept < models["float16"].stat().st_size + 2 * format_overhead < 0.75 * float32_ort
    served, mobile = (predictions(session(path), x) for path in (models["float16"], tmp_path / "m-float16.ort"))
    assert abs(percent_correct(mobile == labels) - percent_correct(served == labels)) <= ONE_IMAGE_PT
