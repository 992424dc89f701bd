"""The kernel benchmark script: it runs, its table is consistent, and it refuses what cannot run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels import bench
from kernels.dispatch import BackendUnavailable


def _rows(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| INR")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_eager_rows_on_cpu(capsys):
    assert bench.main(["--device", "cpu", "--methods", "eager", "--inr", "shipped", "--samples", "1,2",
                       "--width", "4", "--quick", "--threads", "1"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("Device: CPU")
    rows = _rows(table)
    assert [(r[0], r[1], r[2]) for r in rows] == [("shipped", "1", "eager"), ("shipped", "2", "eager")]
    problem = bench.make_problem("shipped", 4, torch.device("cpu"))
    for _, k, _, _, _, ms, coords_s, tflops, _, speedup in rows:
        seconds = float(ms) / 1e3
        assert float(coords_s.replace(",", "")) == pytest.approx(problem.rows / seconds, rel=0.01)
        flops = problem.flops_per_row_sample * problem.rows * int(k)
        assert float(tflops) == pytest.approx(flops / seconds / 1e12, abs=1e-3)
        assert speedup == "1.00"


def test_flop_count_of_the_shipped_inr():
    problem = bench.make_problem("shipped", 8, torch.device("cpu"))
    e, h, o = 5 * (1 + 2 * 8), 128, 9  # D * (1 + 2F), hidden, k*k outputs
    assert problem.flops_per_row_sample == 2 * (e * h + 3 * h * h + h * o)
    # One head per generated tensor of the all scope, as shipped: 4 roles x 9 blocks, each with
    # its own row range of the table.
    assert problem.weights.w_hidden.shape == (36, 3, 128, 128)
    assert len(problem.head_offsets) == 37 and problem.head_offsets[-1] == problem.rows


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="TRITON_INTERPRET"):
        bench.check_device(torch.device("cpu"), ["triton"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
def test_cuda_device_without_cuda_is_refused():
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        bench.check_device(torch.device("cuda"), ["eager"])


def test_register_adds_bench_kernel_and_shares_a_bench_group():
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command")
    other = subparsers.add_parser("bench").add_subparsers(dest="bench_command")
    other.add_parser("service")
    bench.register(subparsers)
    args = parser.parse_args(["bench", "kernel", "--quick", "--samples", "1,100", "--inr", "paper"])
    assert args.func is bench.cmd_bench_kernel
    assert args.samples == [1, 100] and args.inr == ["paper"] and args.quick
    assert parser.parse_args(["bench", "service"]).bench_command == "service"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "kernel", "--samples", "0"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter check")
def test_triton_rows_under_the_interpreter(monkeypatch, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # set before kernels.fused_inr is first imported
    assert bench.main(["--device", "cpu", "--methods", "triton,eager", "--precisions", "fp32", "--inr", "shipped",
                       "--samples", "1", "--width", "2", "--quick", "--threads", "1"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r[2] for r in rows] == ["eager", "triton"]
    assert rows[0][4] == "per-layer (torch)" and rows[1][4].startswith("fused, BLOCK_M")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a hang guard: the compile took over 280 s on a loaded 2-core CI machine
def test_kernel_compiles_for_hopper_and_fp32_fits_once_weights_are_re_read_per_sample():
    """Ahead-of-time sm_90 compile (no GPU needed), in a fresh process without the interpreter: at the
    shipped INR's HP = 128 the default fp32 (3xTF32) kernel holding a head's weights across the K loop
    needs 288 KiB of shared memory, over Hopper's 227; re-reading them per sample fits."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-m", "kernels.bench", "--compile-report", "128", "--precisions", "fp32"],
                         env=env, capture_output=True, text=True, timeout=1100, check=False,
                         cwd=Path(bench.__file__).parent.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [r for r in _rows(res.stdout) if r[0] != "HP"]
    assert rows and all(r[0] == "128" and r[1] == "fp32" for r in rows)
    fits = {r[5]: r[7] for r in rows}  # weights -> fits sm_90 (the same for both BLOCK_M)
    assert fits == {"held across samples": "no", "re-read per sample": "yes"}
    for r in rows:
        assert (float(r[6]) * 1024 <= bench.SM90_SHARED_LIMIT) == (r[7] == "yes")
        assert int(r[9]) > 0  # wgmma: the dots run on the tensor cores
