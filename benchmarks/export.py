"""Benchmark the served dtypes of one checkpoint: bytes, generation time, onnxruntime speed, accuracy.

    python -m benchmarks.export [--arch resnet20 | --checkpoint PATH] [--widths 8,16,32,64] [--dtypes ...]
                              [--runs 20] [--data DIR]

One row per (width, dtype): the file size; cold generation (hypernetwork pass, int8 calibration and
ONNX export; best of ``--repeats``); onnxruntime CPU time per call, 1 thread, batch 1 and batch 64
(median of ``--runs`` calls, the dtypes' sessions interleaved so each width's ratios come from one
run under the same load); int8-weights also as the client opens it (``session.disable_quant_qdq``);
test-set accuracy and top-1 agreement with float32 on the same images. Without ``--checkpoint``,
the shipped checkpoint of ``--arch``. Accuracy needs the dataset (``--data``, default: the installed one);
``--test-images 0`` skips it. Prints the CPU with its int8-relevant flags and a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from service.export import DTYPES
from service.export.evaluate import load_test_split, predictions, session
from service.hypernet import load_checkpoint
from service.hypernet.checkpoint import Checkpoint
from service.serving.pipeline import render_model
from service.training.evaluate import percent_correct

# The flags that decide onnxruntime's int8 kernels on x86 (VNNI: one-instruction u8 x s8 dot products).
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")


def cpu_description() -> str:
    """'AMD EPYC (avx2, avx512f, avx512_vnni)': the model name and the INT8_FLAGS it has."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = set(fields.get("flags\t\t", fields.get("flags", "")).split())
    name = fields.get("model name\t", platform.machine()).strip()
    return f"{name} ({', '.join(f for f in INT8_FLAGS if f in flags) or 'no AVX2'})"


def median_ms(sessions: dict[str, ort.InferenceSession], x: np.ndarray, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for sess in sessions.values():
        sess.run(None, {"input": x})  # warm-up
    for _ in range(runs):  # interleaved, so a load spike hits every dtype alike
        for name, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, {"input": x})
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def bench_width(ckpt: Checkpoint, width: int, args: argparse.Namespace, test: tuple | None) -> list[str]:
    blobs, cold = {}, {}
    for dtype in args.dtypes:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            blobs[dtype] = render_model(ckpt, width, dtype, backend="torch").data
            times.append(time.perf_counter() - start)
        cold[dtype] = min(times) * 1e3
    sessions = {dtype: session(data) for dtype, data in blobs.items()}
    if "int8-weights" in blobs:  # as the client opens it
        sessions["int8-weights, folded"] = session(blobs["int8-weights"], fold_qdq=True)
    m = ckpt.manifest
    x = np.random.default_rng(0).standard_normal((64, m.in_channels, *m.input_size), dtype=np.float32)
    ms1, ms64 = median_ms(sessions, x[:1], args.runs), median_ms(sessions, x, args.runs)
    preds = {name: predictions(sess, test[0]) for name, sess in sessions.items()} if test else {}
    rows = []
    for name in sessions:
        dtype = name.split(",")[0]
        acc = f"{percent_correct(preds[name] == test[1]):.2f}" if test else "-"
        agree = f"{percent_correct(preds[name] == preds['float32']):.2f}" if test else "-"  # agreement
        rows.append(f"| {width} | {name} | {len(blobs[dtype]):,} | {cold[dtype]:.0f} | {ms1[name]:.2f} "
                    f"| {ms64[name]:.1f} | {ms64['float32'] / ms64[name]:.2f} | {acc} | {agree} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped checkpoint of --arch")
    parser.add_argument("--arch", default="resnet20", help="shipped catalog id, when no --checkpoint")
    parser.add_argument("--widths", default="8,16,32,64")
    parser.add_argument("--dtypes", type=lambda v: v.split(","), default=list(DTYPES),
                        help="comma-separated; float32 always runs first (the reference)")
    parser.add_argument("--repeats", type=int, default=3, help="generations per dtype (cold time: the best)")
    parser.add_argument("--runs", type=int, default=20, help="timed onnxruntime calls per session and batch")
    parser.add_argument("--data", type=Path, default=None, help="dataset directory (default: the installed one)")
    parser.add_argument("--test-images", type=int, default=None, help="first N test images (default all; 0: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.dtypes = ["float32", *(d for d in args.dtypes if d != "float32")]
    unknown = set(args.dtypes) - set(DTYPES)
    if unknown:
        parser.error(f"unknown dtypes {sorted(unknown)}; choose from {', '.join(DTYPES)}")
    if args.checkpoint is not None:
        ckpt = load_checkpoint(args.checkpoint)
    else:
        from service.serving.catalog import Catalog
        from service.settings import SHIPPED_CHECKPOINTS

        ckpt = Catalog.from_paths(sorted(SHIPPED_CHECKPOINTS.glob("*.safetensors"))).get(args.arch)
    test = None if args.test_images == 0 else load_test_split(ckpt.manifest, args.data, args.test_images)
    images = "no accuracy" if test is None else f"accuracy on {len(test[1]):,} test images"
    print(f"# {ckpt.manifest.arch} {ckpt.short_sha}; {cpu_description()}; torch 1 thread, onnxruntime "
          f"{ort.__version__} CPU 1 thread; {images}")
    print("| width | dtype | bytes | cold generation ms | ORT ms, batch 1 | ORT ms, batch 64 "
          "| x float32 speed (batch 64) | test accuracy % | top-1 agreement with float32 % |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for width in (int(w) for w in args.widths.split(",")):
        for row in bench_width(ckpt, width, args, test):
            print(row, flush=True)


if __name__ == "__main__":
    main()
