"""Run exported models in onnxruntime on real images: sessions, test images, predictions (their accuracy:
``service.training.evaluate.percent_correct``).

Shared by the export benchmark (``python -m benchmarks.export``) and the accuracy and interop
tests, so the numbers in docs/BENCHMARKS.md and the bounds in tests come from the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.export.calibration import normalized
from service.hypernet.checkpoint import Manifest


def session(model: bytes | str | Path, threads: int = 1, fold_qdq: bool = False) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads. ``fold_qdq`` sets ``session.disable_quant_qdq``:
    onnxruntime then constant-folds weight-only DequantizeLinear nodes to float32 weights at load
    instead of keeping them (to match integer kernels) and running them on every call."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if fold_qdq:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def load_test_split(manifest: Manifest, data: Path | None = None,
                    limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (N, C, H, W) preprocessed as the model expects, labels int64 (N,)) of the dataset's
    test split; ``limit`` keeps the first N images (``test[:5000]`` in a manifest's ``measured_on``)."""
    from service.training.data import load_dataset  # needs the dataset on disk, as evaluation always does

    test = load_dataset(manifest.dataset, data).test
    images, labels = test.images[:limit], test.labels[:limit]
    return normalized(images.numpy(), manifest).numpy(), labels.numpy()


def predictions(sess: ort.InferenceSession, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Top-1 class per image, (N,) int64."""
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0].argmax(axis=1) for i in range(0, len(x), batch)])

