"""ONNX nodes and initializers for one weight storage (``dtype``): the pieces ``onnx_builder`` wires up.

- ``float32``: plain initializers.
- ``float16``: fp16 initializers, each followed by a ``Cast`` to float32: half the file, same IO.
  onnxruntime's CPU provider has no fp16 Conv kernel on x86 (checked with ORT 1.32: it wraps an
  fp16 Conv in inserted Casts and computes in fp32), so an fp16 compute graph would buy nothing
  there; our casts act on constants and are folded away when a session loads. A download format.
- ``int8-weights``: weight-only QDQ. Conv/Gemm weights are int8 with one symmetric float scale per
  output channel (zero point 0), dequantized by ``DequantizeLinear(axis=0)``; biases stay float32.
  The smallest file; onnxruntime computes it in float32.
- ``int8``: static QDQ for int8 compute. Weights as in ``int8-weights``; every activation that
  feeds a Conv, Add or Gemm goes through ``QuantizeLinear -> DequantizeLinear`` (uint8, one scale
  per tensor, from calibration ranges); biases are int32 at scale input_scale * weight_scale, so
  onnxruntime fuses each DQ -> Conv -> (Relu ->) Q group into an integer QLinearConv.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
INT32_MAX = np.iinfo(np.int32).max
UINT8_LEVELS = 255
# Activation scales keep this many significant bits (rounded up), so float noise in the calibration
# pass (a different thread split, say) moves a range without moving the bytes, except at a boundary.
SCALE_BITS = 10
CLIP_RATIOS = np.linspace(0.5, 1.0, 51)  # candidate weight clipping, as a share of a channel's |max|

Range = tuple[float, float]  # (min, max) of an activation over the calibration images


def finite_array(name: str, tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().float().numpy()
    if not np.isfinite(array).all():  # numpy: ~10x cheaper per call than torch.isfinite here
        raise ValueError(f"state tensor {name} holds NaN or inf")
    return array


def quantize_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (axis 0): w ~= q * scale, q in [-127, 127].

    Each channel's scale clips at the share of its |max| (0.50..1.00 in steps of 0.01) that minimises
    the squared rounding error, so a few outliers do not coarsen the grid for the rest. Over all 57
    widths of the shipped resnet20 it left int8's mean agreement with float32 unchanged (98.77% vs
    98.76%) and moved the worst accuracy drop from 0.36 to 0.29 pt (docs/BENCHMARKS.md); ~20 ms at width 64.
    """
    flat = w.reshape(w.shape[0], -1)  # (Cout, Cin * k * k)
    absmax = np.maximum(np.abs(flat).max(axis=1), 1e-12)  # an all-zero channel still needs a scale > 0
    scales = (absmax[None, :] * CLIP_RATIOS[:, None] / 127.0).astype(np.float32)  # (R, Cout)
    q = np.clip(np.rint(flat[None] / scales[..., None]), -127, 127)  # (R, Cout, K)
    error = ((q * scales[..., None] - flat[None]) ** 2).sum(axis=2)  # (R, Cout)
    scale = scales[error.argmin(axis=0), np.arange(flat.shape[0])]  # (Cout,): first minimum, deterministic
    q = np.clip(np.rint(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
    return q, scale


def activation_qparams(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """Asymmetric uint8 (scale, zero point) covering [min(lo, 0), max(hi, 0)], so 0.0 is exact (padding,
    ReLU). A ReLU output has lo = 0, hence zero point 0: the uint8 clamp at 0 *is* the ReLU."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    raw = max((hi - lo) / UINT8_LEVELS, 1e-8)  # a constant-zero tensor still needs a positive scale
    mantissa, exponent = math.frexp(raw)
    scale = np.float32(math.ldexp(math.ceil(mantissa * 2**SCALE_BITS) / 2**SCALE_BITS, exponent))
    zero_point = np.uint8(min(max(round(-lo / float(scale)), 0), UINT8_LEVELS))
    return scale, zero_point


class Graph:
    """Accumulates nodes and initializers. ``params`` returns a layer's float32 weight and bias value
    names; ``activation`` passes a float32 activation through Q/DQ when ``dtype`` is ``int8``."""

    def __init__(self, dtype: str, ranges: dict[str, Range] | None = None):
        if dtype == "int8" and ranges is None:
            raise ValueError("dtype int8 needs activation ranges (service.export.calibration)")
        self.dtype = dtype
        self.ranges = ranges or {}
        self.scales: dict[str, np.float32] = {}  # activation value name -> its quantization scale
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def _float(self, name: str, array: np.ndarray) -> str:
        if self.dtype != "float16":
            return self._init(name, array)
        if array.size and np.abs(array).max() > FLOAT16_MAX:  # would silently become inf
            raise ValueError(f"{name} has values beyond float16's range; export it as float32")
        return self.node("Cast", [self._init(f"{name}.fp16", array.astype(np.float16))], name, to=TensorProto.FLOAT)

    def _dequantize(self, name: str, q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> str:
        inputs = [self._init(f"{name}.q", q), self._init(f"{name}.scale", scale),
                  self._init(f"{name}.zero_point", zero_point)]
        return self.node("DequantizeLinear", inputs, name, axis=0)

    def params(self, prefix: str, weight: torch.Tensor, bias: torch.Tensor, x: str) -> tuple[str, str]:
        """(weight, bias) value names of the Conv/Gemm ``prefix`` whose float input is ``x``."""
        w_name, b_name = f"{prefix}.weight", f"{prefix}.bias"
        w, b = finite_array(w_name, weight), finite_array(b_name, bias)
        if not self.dtype.startswith("int8"):
            return self._float(w_name, w), self._float(b_name, b)
        q, w_scale = quantize_per_channel(w)
        w_value = self._dequantize(w_name, q, w_scale, np.zeros(w_scale.shape, np.int8))
        if x not in self.scales:  # int8-weights, or a layer whose input stays float
            return w_value, self._init(b_name, b)
        # Static int8: the integer kernel adds the bias in the accumulator's units, x_scale * w_scale.
        b_scale = (self.scales[x] * w_scale).astype(np.float32)  # (Cout,)
        b_q = np.clip(np.rint(b / b_scale), -INT32_MAX, INT32_MAX).astype(np.int32)
        return w_value, self._dequantize(b_name, b_q, b_scale, np.zeros(b_scale.shape, np.int32))

    def activation(self, name: str) -> str:
        """``name`` itself, or for int8 the value after ``QuantizeLinear -> DequantizeLinear``."""
        if self.dtype != "int8":
            return name
        if name not in self.ranges:
            raise ValueError(f"no calibration range for activation {name}")
        scale, zero_point = activation_qparams(*self.ranges[name])
        s, z = self._init(f"{name}.scale", np.array(scale)), self._init(f"{name}.zero_point", np.array(zero_point))
        out = self.node("DequantizeLinear", [self.node("QuantizeLinear", [name, s, z], f"{name}.q"), s, z],
                        f"{name}.dq")
        self.scales[out] = scale
        return out
