"""Where int8's ranges come from: onnxruntime's ``quantize_static`` against the generation pass.

    python -m benchmarks.calibration [--arch resnet20] [--width 64] [--runs 30] [--repeats 3]

Both calibrate on the same shipped images (service.export.calibration) and write QDQ with per-channel
int8 weights and per-tensor uint8 activations (MinMax). Prints, per method, the time to calibrate and
quantize (best of ``--repeats``; for the generation pass this is ``activation_ranges`` plus the ONNX
export, the network already generated), the bytes, onnxruntime's batch-64 time with the float32 model
timed in the same interleaved run, and test accuracy. docs/BENCHMARKS.md records why the service
uses the generation pass.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from benchmarks.export import cpu_description, median_ms
from service.export import build_onnx
from service.export.calibration import activation_ranges, calibration_images, normalized
from service.export.evaluate import load_test_split, predictions, session
from service.hypernet import generate
from service.hypernet.checkpoint import Checkpoint
from service.training.evaluate import percent_correct


class _Batches(CalibrationDataReader):
    def __init__(self, x: np.ndarray, batch: int = 64):
        self._batches = iter([{"input": x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _quantize_static(float32: bytes, x: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(float32)
        quantize_static(str(src), str(dst), _Batches(x), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return dst.read_bytes()


def _best(make, repeats: int) -> tuple[bytes, float]:
    times, data = [], b""
    for _ in range(repeats):
        start = time.perf_counter()
        data = make()
        times.append(time.perf_counter() - start)
    return data, min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from service.serving.catalog import Catalog
    from service.settings import SHIPPED_CHECKPOINTS

    ckpt: Checkpoint = Catalog.from_paths(sorted(SHIPPED_CHECKPOINTS.glob("*.safetensors"))).get(args.arch)
    m, width = ckpt.manifest, args.width
    state = generate(ckpt, width)
    float32 = build_onnx(state, m, width, "float32", ckpt.sha256, 1)
    images = normalized(calibration_images(m.dataset), m).numpy()
    models = {"float32": (float32, 0.0),
              "onnxruntime quantize_static": _best(lambda: _quantize_static(float32, images), args.repeats),
              "generation-pass ranges (served)": _best(
                  lambda: build_onnx(state, m, width, "int8", ckpt.sha256, 1, activation_ranges(state, m)),
                  args.repeats)}
    x = np.random.default_rng(0).standard_normal((64, m.in_channels, *m.input_size), dtype=np.float32)
    ms = median_ms({name: session(data) for name, (data, _) in models.items()}, x, args.runs)
    test_x, labels = load_test_split(m)
    print(f"# {m.arch} {ckpt.short_sha} width {width}; {cpu_description()}; 1 thread; "
          f"{len(images)} calibration images; accuracy on {len(labels):,} test images")
    print("| method | calibrate + quantize s | bytes | ORT ms, batch 64 | x float32 speed | test accuracy % |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (data, seconds) in models.items():
        accuracy = percent_correct(predictions(session(data), test_x) == labels)
        print(f"| {name} | {seconds:.2f} | {len(data):,} | {ms[name]:.1f} | {ms['float32'] / ms[name]:.2f} "
              f"| {accuracy:.2f} |")


if __name__ == "__main__":
    main()
