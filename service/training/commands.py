"""``neumeta train base|individual|permute|hypernet``: the ``train`` command group.

Add ``"service.training.commands"`` to ``service.cli.COMMAND_MODULES``. Other training modules join
the group through ``TRAIN_COMMAND_MODULES``: each has ``register(train_subparsers)`` (``hypernet``
lives in ``service.training.hypernet_commands``). ``neumeta eval`` is a top-level command of its
own (``service.training.eval_commands``), registered in ``COMMAND_MODULES`` directly.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from service.archs import FULL_WIDTH, Scope, inner_widths
from service.errors import InvalidParameter

# Modules adding subcommands under ``train`` via ``register(train_subparsers)``, in help order.
TRAIN_COMMAND_MODULES: list[str] = ["service.training.hypernet_commands", "service.training.selfcheck"]


def cmd_train_base(args: argparse.Namespace) -> int:
    from service.training.base import config_from_args, train

    result = train(config_from_args(args))
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


def cmd_train_individual(args: argparse.Namespace) -> int:
    from service.training.base import config_from_args, train

    if not 1 <= args.width <= FULL_WIDTH:
        raise InvalidParameter(f"--width must be in 1..{FULL_WIDTH}, got {args.width}")
    args.out = args.out or f"runs/individual-{'' if args.scope == 'all' else 'last-'}w{args.width}"
    cfg = config_from_args(args, inner_widths(args.scope, args.width), scope=args.scope, width=args.width)
    result = train(cfg)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


def cmd_train_permute(args: argparse.Namespace) -> int:
    from service.training.permute import permute_file

    dst = args.dst or Path(args.src).with_name("permuted.safetensors")
    report = permute_file(args.src, dst)
    print(json.dumps({"output": str(dst), "tv_before": report["tv_before"], "tv_after": report["tv_after"],
                      "groups": report["groups"]}))
    return 0


def cmd_train_ship(args: argparse.Namespace) -> int:
    from service.training.ship import ship

    run = Path(args.run)
    if not (run / "config.json").is_file():
        raise InvalidParameter(f"{run} is not a hypernet run directory (no config.json)")
    base = args.base or json.loads((run / "config.json").read_text())["base"]
    if not Path(base).is_file():
        raise InvalidParameter(f"the run's base {base} does not exist: pass --base")
    try:
        ship(run, Path(base), Path(args.output), args.evaluation, args.samples, args.threads, args.allow_inert)
    except (FileNotFoundError, ValueError) as exc:  # no validated weights yet; inert blocks
        raise InvalidParameter(str(exc)) from None
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from service.training.base import add_arguments

    group = subparsers.add_parser("train", help="train the base model, baselines and the hypernetwork")
    train_subparsers = group.add_subparsers(dest="train_command", metavar="WHAT", required=True)

    p = train_subparsers.add_parser("base", help="full-width ResNet20 (resumable), then BatchNorm folding")
    add_arguments(p, default_out="runs/base")
    p.set_defaults(func=cmd_train_base)

    p = train_subparsers.add_parser("individual", help="a ResNet20 trained alone at one width (baseline)")
    add_arguments(p, default_out=None)
    p.set_defaults(out=None)  # default derived from scope and width
    p.add_argument("--width", type=int, required=True, help="inner width on the stage-3 scale (full = 64)")
    p.add_argument("--scope", default="all", choices=[s.value for s in Scope], help="which blocks take the width")
    p.set_defaults(func=cmd_train_individual)

    p = train_subparsers.add_parser("permute", help="reorder a folded model's channels for smoothness")
    p.add_argument("src", help="folded.safetensors written by `train base`")
    p.add_argument("dst", nargs="?", default=None, help="output (default: permuted.safetensors beside SRC)")
    p.set_defaults(func=cmd_train_permute)

    for name in TRAIN_COMMAND_MODULES:
        importlib.import_module(name).register(train_subparsers)

    p = train_subparsers.add_parser("ship", help="a service checkpoint from a hypernet run's best EMA weights")
    p.add_argument("run", help="the run directory of `neumeta train hypernet`")
    p.add_argument("-o", "--output", required=True, help="the checkpoint to write (.safetensors)")
    p.add_argument("--base", default=None, help="the permuted base the run trained on (default: the run's own)")
    p.add_argument("--evaluation", type=Path, default=None, help="embed this `neumeta eval` JSON (the test table)")
    p.add_argument("--samples", type=int, default=None, help="default K (default: chosen on VAL)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--allow-inert", action="store_true",
                   help="ship even if zeroing the generated conv2 weights leaves predictions unchanged")
    p.set_defaults(func=cmd_train_ship)

    from kernels.bench import bench_group
    from service.training.bench_train import register as register_bench_train

    register_bench_train(bench_group(subparsers))
