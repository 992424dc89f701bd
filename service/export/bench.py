"""Benchmark ONNX export per dtype at one width: build time, size, logit drift, onnxruntime time.

    python -m service.export.bench [--checkpoint PATH] [--width 64] [--repeats 50] [--inputs 64] [--runs 10]

Without ``--checkpoint`` a tiny random checkpoint (tests/factories.py) is used: build time and
size depend only on the width, but the float16/int8 drift of random weights says little about a
trained model's, so pass a trained checkpoint for those columns. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from service.export import DTYPES, build_onnx
from service.hypernet import generate, load_checkpoint
from service.hypernet.checkpoint import Checkpoint


def _load(path: Path | None) -> Checkpoint:
    if path is not None:
        return load_checkpoint(path)
    from tests.factories import tiny_checkpoint  # dev-only helper, only needed without --checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        return load_checkpoint(tiny_checkpoint(Path(tmp) / "tiny.safetensors"))


def _session(data: bytes, fold_qdq: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if fold_qdq:
        # onnxruntime keeps DequantizeLinear nodes (to match QDQ patterns) and runs them on every
        # call; with QDQ handling off, constant folding turns int8 weights into float32 at load.
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _infer(data: bytes, x: np.ndarray, fold_qdq: bool, runs: int) -> tuple[np.ndarray, float]:
    """(logits, median ms per batch) of one session."""
    session = _session(data, fold_qdq)
    logits = session.run(["logits"], {"input": x})[0]  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(["logits"], {"input": x})
        times.append(time.perf_counter() - start)
    return logits, statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--inputs", type=int, default=64, help="random inputs (one batch) for drift and ORT time")
    parser.add_argument("--runs", type=int, default=10, help="timed onnxruntime calls per session")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    ckpt = _load(args.checkpoint)
    m = ckpt.manifest
    state = generate(ckpt, args.width)
    x = torch.randn(args.inputs, m.in_channels, *m.input_size, generator=torch.Generator().manual_seed(0)).numpy()

    rows, reference = [], None
    for dtype in DTYPES:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            data = build_onnx(state, m, args.width, dtype, ckpt.sha256, 1)
            times.append(time.perf_counter() - start)
        logits, infer_ms = _infer(data, x, fold_qdq=False, runs=args.runs)
        _, folded_ms = _infer(data, x, fold_qdq=True, runs=args.runs)
        if reference is None:
            reference = logits  # float32 comes first in DTYPES
        drift = float(np.abs(logits - reference).max())
        rows.append((dtype, statistics.median(times) * 1e3, min(times) * 1e3, len(data), drift,
                     drift / float(np.abs(reference).max()), infer_ms, folded_ms))

    source = args.checkpoint or "tiny random checkpoint (tests/factories.py)"
    print(f"# {m.arch} width {args.width}, {source}; {platform.processor() or platform.machine()}, "
          f"torch threads 1, onnxruntime {ort.__version__}")
    print(f"| dtype | build ms (median of {args.repeats}) | build ms (min) | bytes "
          "| max abs logit diff vs float32 | relative to max abs logit "
          f"| ORT ms per batch of {args.inputs} | same, disable_quant_qdq=1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for dtype, median, best, size, drift, rel, infer_ms, folded_ms in rows:
        print(f"| {dtype} | {median:.2f} | {best:.2f} | {size:,} | {drift:.2e} | {rel:.2e} "
              f"| {infer_ms:.1f} | {folded_ms:.1f} |")


if __name__ == "__main__":
    main()
