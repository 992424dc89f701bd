"""Benchmark of the hypernetwork evaluators: fused Triton kernel vs PyTorch eager vs torch.compile.

Evaluates a random-weight INR over the coordinate table of a width (scope ``all``, 1 input
channel, 10 classes) and prints a markdown table: table rows (coordinates) per second and
achieved TFLOP/s, counting 2 * MACs of the MLP per row per sample (input layer E x H, L hidden
H x H, output H x O; unpadded, encoding excluded). ``neumeta bench kernel`` or
``python -m kernels.bench``; on CUDA it times with ``triton.testing.do_bench`` (median), on CPU
with ``time.perf_counter`` (median).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kernels.dispatch import BackendUnavailable
from kernels.reference import INRWeights, inr_mean_reference
from service.constants import KERNEL_PRECISIONS, MAX_FUSED_HIDDEN, MAX_SAMPLES

# The shipped `all` checkpoint's INR (one head per generated tensor: 36 heads) and the paper's 512-wide,
# 8-layer INR (input layer + 7 residual hidden layers; output layer excluded from the count; one head
# per role). The head layout changes only which weights a row reads, not its work.
INR_SHAPES: dict[str, dict[str, Any]] = {  # HyperNetConfig keyword arguments
    "shipped": {"hidden": 128, "layers": 3, "num_freqs": 8, "head_per_block": True},
    "paper": {"hidden": 512, "layers": 7, "num_freqs": 10},
}
METHODS = ("triton", "eager", "compile")
# Dense (no sparsity) peak TFLOP/s of the SXM parts by dot precision, from NVIDIA's datasheets.
# "fp32" is the CUDA-core rate of PyTorch's default fp32 matmuls; the kernel's fp32 rows run
# 3xTF32 on the tensor cores and can exceed it.
PEAK_TFLOPS = {
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
}


@dataclass(frozen=True)
class Case:
    inr: str
    samples: int
    method: str
    precision: str


@dataclass(frozen=True)
class Problem:
    """One INR shape over one width's table, on one device."""

    coords: torch.Tensor
    jitter: torch.Tensor
    out_scale: torch.Tensor
    head_offsets: list[int]
    weights: INRWeights
    num_freqs: int
    flops_per_row_sample: int

    @property
    def rows(self) -> int:
        return self.coords.shape[0]


def make_problem(inr: str, width: int, device: torch.device) -> Problem:
    from service.hypernet import HyperNet, HyperNetConfig, coord_table
    from service.hypernet.model import head_count

    shape = INR_SHAPES[inr]
    config = HyperNetConfig(**shape, heads=head_count("all", shape.get("head_per_block", False)))
    torch.manual_seed(0)
    hypernet = HyperNet(config)
    table = coord_table("all", width, 1, 10, config.norm, config.noise)
    weights = hypernet.weights(table).map(lambda t: t.detach().to(device))
    h, e, o = config.hidden, config.encoded_dim, config.out_dim
    macs = e * h + config.layers * h * h + h * o
    return Problem(
        table.coords.to(device), table.jitter.to(device), table.out_scale.to(device),
        hypernet.head_offsets(table), weights, config.num_freqs, 2 * macs,
    )


def evaluator(method: str, precision: str, problem: Problem, samples: int) -> Callable[[], torch.Tensor]:
    args = (problem.coords, problem.jitter, problem.out_scale, problem.head_offsets, problem.weights,
            problem.num_freqs, samples, 1234)
    if method == "triton":
        from kernels.fused_inr import fused_inr_mean

        return lambda: fused_inr_mean(*args, precision=precision)
    fn = torch.compile(inr_mean_reference) if method == "compile" else inr_mean_reference
    return lambda: fn(*args)


def time_seconds(fn: Callable[[], torch.Tensor], device: torch.device, quick: bool) -> float:
    """Median seconds per call, after warm-up (compilation and caches stay out of the number)."""
    with torch.no_grad():
        if device.type == "cuda":
            import triton.testing

            # do_bench's warm-up and repeat windows are in ms; quick keeps each case ~0.1 s.
            ms: float = triton.testing.do_bench(fn, warmup=10 if quick else 50, rep=50 if quick else 500,
                                         return_mode="median")
            return ms / 1e3
        fn()  # warm-up
        times = []
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def path_of(case: Case, problem: Problem) -> str:
    if case.method != "triton":
        return "per-layer (torch)"
    from kernels.fused_launch import path_taken

    return path_taken(problem.weights.w_in.shape[2], case.precision, problem.coords.device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"CPU {model}, {torch.get_num_threads()} torch threads"


def peak_for(name: str, precision: str) -> float | None:
    for part, peaks in PEAK_TFLOPS.items():
        if part in name:
            return peaks[precision]
    return None


def cases(args: argparse.Namespace) -> list[Case]:
    out = []
    for inr in args.inr:
        for k in args.samples:
            for method in args.methods:
                # PyTorch's matmuls run at fp32 here (torch's default matmul precision "highest").
                # Above the fused limit the kernel's per-layer path runs tf32 as fp32: skip it.
                fused = INR_SHAPES[inr]["hidden"] <= MAX_FUSED_HIDDEN
                precisions = [p for p in args.precisions if fused or p != "tf32"] or ["fp32"]
                for precision in precisions if method == "triton" else ["fp32"]:
                    out.append(Case(inr, k, method, precision))
    return out


def check_device(device: torch.device, methods: list[str]) -> None:
    """Refuse, with the reason, what cannot run here (never a silent substitute)."""
    from kernels.dispatch import triton_available

    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("--device cuda: no CUDA device here; use --device cpu")
    if "triton" in methods:
        ok, why = triton_available()
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            ok, why = False, "on CPU the kernel runs only under TRITON_INTERPRET=1"
        if not ok:
            raise BackendUnavailable(f"cannot benchmark triton: {why}")


def run(args: argparse.Namespace) -> str:
    device = torch.device(args.device)
    check_device(device, args.methods)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    name = device_name(device)
    lines = [
        f"Device: {name}; width {args.width} (scope all), torch {torch.__version__}",
        "",
        "| INR | K | method | precision | path | ms | coords/s | TFLOP/s | % peak | x eager |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    problems: dict[str, Problem] = {}
    eager_s: dict[tuple[str, int], float] = {}
    for case in sorted(cases(args), key=lambda c: (c.inr, c.samples, c.method != "eager")):
        if case.inr not in problems:
            problems[case.inr] = make_problem(case.inr, args.width, device)
        problem = problems[case.inr]
        seconds = time_seconds(evaluator(case.method, case.precision, problem, case.samples), device, args.quick)
        if case.method == "eager":
            eager_s[(case.inr, case.samples)] = seconds
        tflops = problem.flops_per_row_sample * problem.rows * case.samples / seconds / 1e12
        peak = peak_for(name, case.precision)
        base = eager_s.get((case.inr, case.samples))
        lines.append(
            f"| {case.inr} | {case.samples} | {case.method} | {case.precision} | {path_of(case, problem)} "
            f"| {seconds * 1e3:.2f} | {problem.rows / seconds:,.0f} | {tflops:.3f} "
            f"| {f'{100 * tflops / peak:.1f}' if peak else '-'} | {f'{base / seconds:.2f}' if base else '-'} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)  # progress; the table is printed at the end
    return "\n".join(lines)


# Hopper (sm_90) shared memory per block with the opt-in maximum, in bytes.
SM90_SHARED_LIMIT = 232448


def compile_report(hiddens: list[int], precisions: list[str]) -> str:
    """Compile the fused kernel ahead of time for sm_90 (no GPU needed) and report its resources.

    Shared memory decides whether a launch shape fits (over 227 KiB: the launcher moves on to
    the next shape, then to the per-layer path); ptxas -v gives registers and spills; wgmma
    counts Hopper tensor-core instructions in the PTX (0: the dots run on the FMA path).
    """
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise BackendUnavailable("--compile-report compiles for the GPU: unset TRITON_INTERPRET")
    import re
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler.compiler import ASTSource

    from kernels import fused_inr, fused_launch

    kernel = fused_inr._fused_inr_kernel
    ptxas = get_ptxas(90).path
    columns = ("HP", "precision", "BLOCK_M", "warps", "stages", "weights", "shared KiB", "fits sm_90", "ptxas -v",
               "wgmma in PTX")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for hp in hiddens:
        for precision in precisions:
            prec = fused_inr._KERNEL_PRECISION[precision]
            mat = "*bf16" if prec == "bf16" else "*fp32"
            sig = {name: "*fp32" for name in kernel.arg_names}
            sig.update({n: "*i32" for n in ("tile_head_ptr", "tile_start_ptr", "tile_stop_ptr", "keys_ptr")})
            sig.update({n: mat for n in ("wv_ptr", "ws_ptr", "wc_ptr", "wh_ptr", "wo_ptr")})
            sig.update({n: "i32" for n in ("samples", "D", "O", "sample_stride")})
            # The shipped INR's shape (D = 5, F = 8, L = 3, O = 9) at hidden HP.
            const = {"L": 3, "CLEAN_FIRST": True, "DA": 8, "F_PAD": 8, "HP": hp, "OP": 16, "SPLIT": hp > 128,
                     "PREC": prec}
            for launch in fused_launch.candidates(hp, 1 << 20, interpreting=False):
                meta = {**const, "BLOCK_M": launch.block_m, "RELOAD": launch.reload}
                src = ASTSource(kernel, {**sig, **{k: "constexpr" for k in meta}}, constexprs=meta)
                opts = {"num_warps": launch.num_warps, "num_stages": launch.num_stages}
                ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts)
                with tempfile.TemporaryDirectory() as tmp:
                    ptx = os.path.join(tmp, "k.ptx")
                    with open(ptx, "w") as f:
                        f.write(ck.asm["ptx"])
                    res = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", ptx, "-o", ptx + ".o"],
                                         check=False, capture_output=True, text=True)
                regs = re.search(r"Used (\d+) registers", res.stderr)
                spill = re.search(r"(\d+) bytes spill stores", res.stderr)
                usage = f"{regs.group(1)} regs, {spill.group(1)} B spilled" if regs and spill else res.stderr[-80:]
                hgmma = len(re.findall(r"wgmma\.mma_async", ck.asm["ptx"]))
                fits = "yes" if ck.metadata.shared <= SM90_SHARED_LIMIT else "no"
                weights = "re-read per sample" if launch.reload else "held across samples"
                lines.append(f"| {hp} | {precision} | {launch.block_m} | {launch.num_warps} | {launch.num_stages} "
                             f"| {weights} | {ck.metadata.shared / 1024:.0f} | {fits} | {usage} | {hgmma} |")
                print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def _csv(kind: Callable[[str], object], allowed: tuple[object, ...] | None = None) -> Callable[[str], list[object]]:
    def parse(text: str) -> list[object]:
        items = [kind(item.strip()) for item in text.split(",") if item.strip()]
        bad = [i for i in items if allowed is not None and i not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list of {', '.join(map(str, allowed or ()))}")
        return items

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    cuda = torch.cuda.is_available()
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if cuda else "cpu")
    p.add_argument("--quick", action="store_true", help="short timing windows: checks the script, rough numbers")
    p.add_argument("--inr", type=_csv(str, tuple(INR_SHAPES)), default=list(INR_SHAPES),
                   help="INR shapes: shipped (H128, L3, F8), paper (H512, L7, F10)")
    p.add_argument("--samples", type=_csv(int, tuple(range(1, MAX_SAMPLES + 1))), default=[1, MAX_SAMPLES],
                   help="K values")
    p.add_argument("--methods", type=_csv(str, METHODS), default=list(METHODS) if cuda else ["eager"],
                   help="triton, eager, compile (default on CPU: eager; triton on CPU needs TRITON_INTERPRET=1)")
    p.add_argument("--precisions", type=_csv(str, KERNEL_PRECISIONS), default=list(KERNEL_PRECISIONS),
                   help="Triton dot precisions (accumulation is always fp32)")
    p.add_argument("--width", type=int, default=64, help="width whose coordinate table is evaluated")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--compile-report", type=_csv(int, (16, 32, 64, 128, 256)), metavar="HP,...",
                   help="instead of timing: compile the kernel for sm_90 at these padded hidden sizes "
                        "(no GPU needed) and report shared memory, registers and spills")


def cmd_bench_kernel(args: argparse.Namespace) -> int:
    if args.compile_report:
        print(compile_report(args.compile_report, args.precisions))
        return 0
    try:
        print(run(args), flush=True)
    finally:
        if "compile" in args.methods:
            # torch.compile's pool of compile workers otherwise outlives the table and keeps the
            # process from exiting (seen once on the H100; a CPU run exits either way).
            from torch._inductor.async_compile import shutdown_compile_workers

            shutdown_compile_workers()
    return 0


def bench_group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The subcommands of ``neumeta bench``, made by whichever module registers first."""
    bench = subparsers.choices.get("bench") or subparsers.add_parser("bench", help="benchmarks")
    group = next((a for a in bench._actions if isinstance(a, argparse._SubParsersAction)), None)
    return group or bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench kernel`` to the ``neumeta`` command (``bench train`` is service.training.commands')."""
    p = bench_group(subparsers).add_parser(
        "kernel", help="hypernetwork evaluators: Triton vs PyTorch eager vs torch.compile")
    add_arguments(p)
    p.set_defaults(func=cmd_bench_kernel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return cmd_bench_kernel(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
