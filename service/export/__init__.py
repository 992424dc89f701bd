"""Folded state_dict -> ONNX bytes (float32 / float16 / int8 static QDQ / int8-weights) with NeuMeta metadata."""

from service.constants import DTYPES  # re-exported: the request path and tests read it from here
from service.export.onnx_builder import (
    GENERATOR_VERSION,
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    activation_names,
    build_model,
    build_onnx,
    metadata,
    predict_size,
)

__all__ = [
    "DTYPES", "GENERATOR_VERSION", "INPUT_NAME", "OPSET", "OUTPUT_NAME", "activation_names", "build_model",
    "build_onnx", "metadata", "predict_size",
]
