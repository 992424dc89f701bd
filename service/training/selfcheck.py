"""``neumeta train selfcheck``: does the batched INR path compute the reference's math on this device?

The trainer evaluates the INR through ``batched_inr`` (padded buckets, gathers, fused ops) and the
service through ``kernels.reference``; on a new device (a lent GPU, another torch) the two are
checked against each other before minutes are spent training: outputs, the generated tensors, the
norm term and every parameter's gradient, at a few widths, on a recipe's INR shape with random
weights. Exit 0 when every relative error is within tolerance, 1 otherwise (the GPU session then
trains with ``--inr-path reference``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from service.hypernet import HyperNet, coord_table, scatter
from service.training.batched_inr import BatchedINR
from service.training.precision import resolve_device

TOLERANCE = 1e-3  # relative, max-abs error over max-abs value: float32 sums in another order stay ~1e-6


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _gradients(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter's gradient; one that took none fails the check (see ``check``)."""
    grads = {}
    for name, p in module.named_parameters():
        if p.grad is None:
            raise RuntimeError(f"parameter {name} took no gradient")
        grads[name] = p.grad.detach().clone()
    return grads


def check(recipe: str, device: torch.device, widths: list[int], seed: int = 0) -> dict[str, Any]:
    """{width: max relative error of outputs and of gradients} and ``ok``."""
    from service.training.recipes import resolve

    cfg = resolve(recipe, {"base": "-", "out": "-"})
    torch.manual_seed(seed)
    hn = HyperNet(cfg.inr_config())
    with torch.no_grad():  # no zero heads: every parameter must move the output and take a gradient
        for p in hn.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hn = hn.to(device)
    fast = BatchedINR(hn, cfg.scope, 1, 10)
    seed_k = None if hn.config.noise == 0 else 7
    report: dict[str, Any] = {"recipe": recipe, "device": str(device), "widths": {}}
    for width in widths:
        c = hn.config
        table = coord_table(cfg.scope, width, 1, 10, c.norm, c.noise, str(device))
        grads = []
        outs = []
        for path in ("reference", "batched"):
            hn.zero_grad(set_to_none=True)
            if path == "reference":
                out = hn(table, samples=1, seed=seed_k or 0, clean_first=seed_k is None)
                gen = scatter(table, out)
                norm = torch.stack([g.norm() for g in gen.values()]).sum()
            else:
                plan = fast.plan(width)
                out = fast.forward(plan, seed_k)
                gen, norm = scatter(table, out), fast.norm_sum(plan, out)
            probe = sum((g * torch.cos(torch.arange(g.numel(), device=device).view(g.shape) * 0.1)).sum()
                        for g in gen.values())
            (probe + 0.1 * norm).backward()
            outs.append(out.detach())
            grads.append(_gradients(hn))
        report["widths"][width] = {
            "output": _rel(outs[1], outs[0]),
            "gradients": max(_rel(grads[1][n], g) for n, g in grads[0].items()),
        }
    report["ok"] = all(max(r.values()) <= TOLERANCE for r in report["widths"].values())
    return report


def cmd_selfcheck(args: argparse.Namespace) -> int:
    report = check(args.recipe, resolve_device(args.device), args.widths)
    if args.json:
        print(json.dumps(report))
    else:
        for width, r in report["widths"].items():
            print(f"width {width:>2}: output {r['output']:.1e}, gradients {r['gradients']:.1e} (relative)")
        print(f"batched INR path on {report['device']}: {'matches' if report['ok'] else 'DIFFERS FROM'} "
              f"the reference (tolerance {TOLERANCE:g})")
    return 0 if report["ok"] else 1


def register(train_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = train_subparsers.add_parser("selfcheck", help="the trainer's batched INR path against the reference, here")
    p.add_argument("--recipe", default="resnet20", help="whose INR shape is checked")
    p.add_argument("--device", default="auto", help="auto: CUDA when available")
    p.add_argument("--widths", type=int, nargs="+", default=[8, 37, 64])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_selfcheck)
