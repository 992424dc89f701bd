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
TRAIN_COMMAND_MODULES: list[str] = ["service.training.hypernet_commands"]


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


def register(subparsers: argparse._SubParsersAction) -> None:
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
