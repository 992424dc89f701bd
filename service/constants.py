"""The service's vocabularies and limits, spelled once.

The CLI, the settings, the request path and the kernels all import these names from here. This
module imports neither torch nor numpy, so ``neumeta --help`` and ``Settings()`` do not wait
seconds for torch to load. Each vocabulary is a ``Literal`` type (for pydantic and type checkers)
and the tuple of its values (for argparse choices and membership checks).

The Python client keeps its own copy of ``DTYPES`` (clients/python must not depend on the service);
tests/client/test_inference.py checks that the two agree.
"""

from __future__ import annotations

from typing import Literal, get_args

# Weight storage of a generated model. IO stays float32. int8: static QDQ (int8 compute,
# calibrated); int8-weights: weight-only QDQ (the smallest download).
Dtype = Literal["float32", "float16", "int8", "int8-weights"]
DTYPES: tuple[Dtype, ...] = get_args(Dtype)

# What a generation writes: an ONNX model, or the folded PyTorch state_dict as safetensors.
WeightFormat = Literal["onnx", "safetensors"]
WEIGHT_FORMATS: tuple[WeightFormat, ...] = get_args(WeightFormat)

# The hypernetwork evaluator: "auto" picks Triton on CUDA, else the PyTorch reference.
Backend = Literal["auto", "torch", "triton"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

# Dot precision of the Triton kernel (accumulation is always fp32); the torch path is fp32.
KernelPrecision = Literal["fp32", "tf32", "bf16"]
KERNEL_PRECISIONS: tuple[KernelPrecision, ...] = get_args(KernelPrecision)
DEFAULT_KERNEL_PRECISION: KernelPrecision = "fp32"  # until tf32/bf16 are measured on a GPU (<= 0.05 pt loss)

# torch's intra-op threads while generating. A matmul's reduction order depends on how many threads
# split it, so the same request gave other bytes at 2 threads than at 1 (resnet20 width 37): replicas
# with other core counts disagreed on one cache key. One thread makes the bytes a function of the
# request (on one torch build and CPU instruction set); concurrency comes from the generation pool.
GENERATION_THREADS = 1

# Most noisy samples K a generation may average: a manifest's default, ?samples=K and the
# kernel's per-sample keys (computed on the host, one int each) are all bounded by it.
MAX_SAMPLES = 100

# Widest INR hidden size the Triton kernel evaluates in one fused launch (two 128-wide register
# halves); wider INRs run layer by layer. Here, not in kernels.fused_inr, so the bench can read it
# without importing triton.
MAX_FUSED_HIDDEN = 256
