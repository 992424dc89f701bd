"""Running a pulled model: onnxruntime (optional extra, imported lazily) and the model's own preprocessing.

The preprocessing is read from the model file's ``neumeta.preprocess`` metadata, so a client never
hard-codes dataset statistics: x = (pixel * scale - mean) / std per channel, laid out NCHW.

Session options follow the file's ``neumeta.dtype``. An ``int8-weights`` model (int8 weights, each
feeding a DequantizeLinear) is opened with ``session.disable_quant_qdq=1``: onnxruntime then folds the
dequantisation into float32 weights once, at load, instead of keeping the DequantizeLinear nodes for
integer kernels that this format cannot use and running them on every call (2.1x slower at width 64,
batch 64, 1 thread: docs/BENCHMARKS.md). A static ``int8`` model must keep its Q/DQ nodes, which is
what makes it run integer kernels, so it and the float dtypes get the default options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from neumeta_client import errors

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime

_INSTALL_HINT = "install the extra: pip install 'neumeta-client[onnx]'"
FOLD_DEQUANTIZATION = {"session.disable_quant_qdq": "1"}  # session config for weight-only QDQ files
SESSION_CONFIG: dict[str, dict[str, str]] = {"int8-weights": FOLD_DEQUANTIZATION}  # by neumeta.dtype


def import_onnx_extra() -> tuple[Any, Any]:
    """(onnxruntime, numpy), or a `MissingExtra` that says how to install them."""
    try:
        import numpy
        import onnxruntime
    except ImportError as exc:
        raise errors.MissingExtra(f"sessions and predict need onnxruntime and numpy ({exc.name} is missing); "
                                  f"{_INSTALL_HINT}") from exc
    return onnxruntime, numpy


@dataclass(frozen=True)
class ModelCard:
    """What the model file says about itself (metadata_props written by the service)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float
    input_shape: tuple[int, int, int]  # (C, H, W)
    labels: tuple[str, ...]

    @classmethod
    def from_metadata(cls, props: dict[str, str]) -> ModelCard:
        try:
            pre = json.loads(props["neumeta.preprocess"])
            labels = json.loads(props.get("neumeta.labels", "[]"))
            c, h, w = (int(v) for v in pre["input_shape"])
            card = cls(mean=tuple(float(v) for v in pre["mean"]), std=tuple(float(v) for v in pre["std"]),
                       scale=float(pre.get("scale", 1.0)), input_shape=(c, h, w), labels=tuple(map(str, labels)))
        except (KeyError, ValueError, TypeError) as exc:
            raise errors.UnexpectedResponse(f"model metadata has no usable neumeta.preprocess: {exc}") from exc
        if len(card.mean) != c or len(card.std) != c or any(s == 0 for s in card.std):
            raise errors.UnexpectedResponse(f"model preprocessing does not fit {c} channels: {pre}")
        return card


@dataclass(frozen=True)
class Prediction:
    logits: np.ndarray  # (N, num_classes) float32
    class_ids: list[int]  # argmax per image
    labels: list[str]  # class name per image ("" if the model carries no labels)


def open_session(path: Path, providers: list[str] | None = None) -> tuple[onnxruntime.InferenceSession, ModelCard]:
    """A session on the model file with the options its ``neumeta.dtype`` calls for (``SESSION_CONFIG``)."""
    ort, _ = import_onnx_extra()
    providers = providers or ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers)
    props = session.get_modelmeta().custom_metadata_map
    config = SESSION_CONFIG.get(props.get("neumeta.dtype", ""))
    if config:  # the dtype is only known once the file is open; reopening costs one more load
        options = ort.SessionOptions()
        for key, value in config.items():
            options.add_session_config_entry(key, value)
        session = ort.InferenceSession(str(path), options, providers=providers)
    return session, ModelCard.from_metadata(props)


def prepare(images: Any, card: ModelCard, layout: str | None = None) -> np.ndarray:
    """Raw pixels -> normalised float32 (N, C, H, W).

    Accepts one image or a batch, NCHW or NHWC (``layout`` forces one; by default the shape decides,
    NCHW first), and grayscale images without a channel axis when the model has one channel.
    """
    _, numpy = import_onnx_extra()
    c, h, w = card.input_shape
    x = numpy.asarray(images)
    if layout not in (None, "NCHW", "NHWC"):
        raise errors.InvalidParameter(f"layout must be NCHW or NHWC, got {layout!r}")
    if c == 1 and x.ndim in (2, 3) and x.shape[-2:] == (h, w):
        x = x.reshape(-1, 1, h, w)  # grayscale image(s) without a channel axis
    elif x.ndim == 3:
        x = x[None]
    if x.ndim == 4 and (layout == "NHWC" or (layout is None and x.shape[1:] != (c, h, w)
                                               and x.shape[1:] == (h, w, c))):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1:] != (c, h, w):
        raise errors.InvalidParameter(f"images must be {c}x{h}x{w} (CHW) or {h}x{w}x{c} (HWC), one or a batch; "
                                      f"got shape {tuple(numpy.shape(images))}; resize them first")
    mean = numpy.asarray(card.mean, dtype=numpy.float32).reshape(1, c, 1, 1)
    std = numpy.asarray(card.std, dtype=numpy.float32).reshape(1, c, 1, 1)
    x = (x.astype(numpy.float32) * numpy.float32(card.scale) - mean) / std
    return cast("np.ndarray", numpy.ascontiguousarray(x, dtype=numpy.float32))


def run(session: onnxruntime.InferenceSession, card: ModelCard, images: Any, layout: str | None = None) -> Prediction:
    batch = prepare(images, card, layout)
    (logits,) = session.run(None, {session.get_inputs()[0].name: batch})
    ids = [int(i) for i in logits.argmax(axis=1)]
    names = [card.labels[i] if i < len(card.labels) else "" for i in ids]
    return Prediction(logits=logits, class_ids=ids, labels=names)
