"""``neumeta bench train``: the hypernetwork trainer's cost per step, in time and in dispatched ops.

Builds the trainer of a recipe (default ``resnet20``: the shipped INR's shape and objective) on a
random base and random Fashion-MNIST-shaped data (speed does not depend on the values), fixes the
width, and for each (width, batch) reports the median milliseconds of a full training step
(batch, INR, ResNet forward and backward, KD teacher, clip, AdamW, EMA) and the aten ops one step
dispatches, counted with a ``TorchDispatchMode``. Launch-bound devices pay per op, so the op count
predicts GPU step time where CPU milliseconds cannot.

Both INR paths run by default, in the same process: ``batched`` (the trainer's) and
``reference`` (``kernels.reference`` head by head, the same math), and each batched row gives its
speed-up over the reference row of the same shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch.utils._python_dispatch import TorchDispatchMode

from service.training.hypernet_inputs import INR_PATHS


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched while active (forward, backward and optimizer alike)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch leaves this __init__ unannotated
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(trainer: Any, steps: int, warmup: int) -> tuple[float, int, Counter[str]]:
    """(median ms per step, ops per step, the op histogram) of ``trainer`` as configured."""
    for _ in range(warmup):  # plans, models, the optimizer's state: built once per width
        trainer.train_step()
    _sync(trainer.device)
    counter = OpCounter()
    with counter:
        trainer.train_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_step()
        _sync(trainer.device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), sum(counter.ops.values()), counter.ops


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from service.archs import ResNet20, fold_batchnorm
    from service.training.hypernet import Trainer
    from service.training.recipes import resolve

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        base = Path(tmp) / "base.safetensors"
        save_file(fold_batchnorm(ResNet20(1, 10).eval()), str(base))
        paths = INR_PATHS if args.inr_path == "both" else (args.inr_path,)
        for batch in args.batches:
            for width in args.widths:
                reference_ms = None
                for inr_path in sorted(paths, reverse=True):  # reference first: batched rows compare to it
                    cfg = resolve(args.recipe, {
                        "base": str(base), "out": f"{tmp}/run-{inr_path}-{batch}-{width}",
                        "data": f"synthetic:{max(2 * batch, 256)}", "batch": batch, "widths_train": (width, width),
                        "device": args.device, "precision": args.precision, "threads": args.threads,
                        "inr_path": inr_path, "progress": False, "steps": 10**9, "val_every": 10**9,
                        "ckpt_every": 10**9})
                    trainer = Trainer(cfg)
                    ms, ops, hist = bench_one(trainer, args.steps, args.warmup)
                    row = {"width": width, "batch": batch, "inr_path": inr_path, "ms_per_step": round(ms, 2),
                           "ops_per_step": ops, "device": str(trainer.device), "precision": trainer.cfg.precision}
                    if inr_path == "reference":
                        reference_ms = ms
                    elif reference_ms:
                        row["speedup"] = round(reference_ms / ms, 2)
                    if args.top_ops:
                        row["top_ops"] = dict(hist.most_common(args.top_ops))
                    rows.append(row)
                    if not args.json:
                        print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    speed = f"  {row['speedup']:.2f}x the reference" if "speedup" in row else ""
    return (f"width {row['width']:>2}  batch {row['batch']:>4}  {row['inr_path']:<9}  "
            f"{row['ms_per_step']:8.1f} ms/step  {row['ops_per_step']:>6} ops/step  "
            f"({row['device']}, {row['precision']}){speed}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="resnet20", help="the recipe whose INR and objective are timed")
    p.add_argument("--widths", type=int, nargs="+", default=[8, 64])
    p.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    p.add_argument("--inr-path", choices=(*INR_PATHS, "both"), default="both")
    p.add_argument("--device", default="auto", help="auto: CUDA when available")
    p.add_argument("--precision", default="auto", help="auto: bf16 where native (as training)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed steps per row (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top-ops", type=int, default=0, help="also report the N most dispatched ops")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list")


def cmd_bench_train(args: argparse.Namespace) -> int:
    from service.errors import InvalidParameter

    if min(args.widths) < 1 or max(args.widths) > 64 or min(args.batches) < 1 or args.steps < 1:
        raise InvalidParameter("--widths must be in 1..64, --batches and --steps >= 1")
    rows = run(args)
    if args.json:
        print(json.dumps(rows))
    return 0


def register(bench_group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = bench_group.add_parser("train", help="the hypernetwork trainer: ms and dispatched ops per step")
    add_arguments(p)
    p.set_defaults(func=cmd_bench_train)
