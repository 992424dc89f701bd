"""``neumeta train hypernet``: CLI wiring of ``service.training.hypernet``.

``register(train_subparsers)`` adds the ``hypernet`` verb under ``neumeta train``; ``main()`` is
the same parser standalone, which is what torchrun launches:

    torchrun --standalone --nproc_per_node 2 -m service.training.hypernet --base ... --out ...
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from service.errors import InvalidParameter
from service.training import recipes
from service.training.data import DATASETS
from service.training.hypernet_inputs import FIXED_INITS, INR_PATHS, SCOPES, WIDTH_SAMPLINGS
from service.training.precision import DEVICES, TRAIN_PRECISIONS, resolve_device

if TYPE_CHECKING:
    from service.training.hypernet_inputs import TrainConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help=f"a recipe in service/training/recipes/ ({', '.join(recipes.available())}) or a .toml "
                        "path; the flags below override its keys (key foo_bar = flag --foo-bar)")
    p.add_argument("--base", required=True, help="permuted folded full-width model (.safetensors)")
    p.add_argument("--out", required=True, help="run directory (resumes from its last.pt)")
    p.add_argument("--force", action="store_true",
                   help="resume a run even though its recipe changed (what changed is printed)")
    # Every key below defaults to "not given": TrainConfig's default, or the recipe's value.
    p.argument_default = argparse.SUPPRESS
    p.add_argument("--scope", choices=SCOPES, help="which blocks morph")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--data", help="dataset directory (default: the Debian package's)")
    p.add_argument("--steps", type=int, help="optimisation steps")
    p.add_argument("--batch", type=int, help="images per step per rank")
    p.add_argument("--widths-train", type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="width range sampled per step (default: 16 64)")
    p.add_argument("--width-sampling", choices=WIDTH_SAMPLINGS,
                   help="uniform: one width drawn per step; sandwich: steps cycle MIN, MAX, a uniform draw")
    p.add_argument("--hidden", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--freqs", type=int)
    p.add_argument("--band-limit", type=float,
                   help="damp channel-ratio frequencies a narrow width cannot sample (0: off; 0.29 = one "
                        "channel's box); exact at full width, so a continuation may switch it on; needs "
                        "--head-per-block")
    p.add_argument("--head-per-block", action="store_true",
                   help="one INR head per generated tensor (role x block) instead of per role: more parameters, "
                        "the same work per step; with --init-from a per-role INR, each block starts from its "
                        "role's head")
    p.add_argument("--noise", type=float, help="coordinate noise in channels (0 = none)")
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-warmup", type=int, help="steps of linear warm-up before the cosine (default 20)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--lambda-norm", type=float)
    p.add_argument("--lambda-kd", type=float,
                   help="weight of distillation from the base's logits (0 = off, the paper)")
    p.add_argument("--kd-temperature", type=float)
    p.add_argument("--precision", choices=TRAIN_PRECISIONS,
                   help="bf16: ResNet forward under bfloat16 autocast + channels-last (INR stays fp32); "
                        "auto: bf16 where the hardware runs it natively, else fp32")
    p.add_argument("--device", choices=DEVICES, help="auto: CUDA when available")
    p.add_argument("--init-from",
                   help="continue a shipped checkpoint: its INR weights and fixed layers (--base teaches); a larger "
                        "--hidden grows its INR, computing the same function, before training goes on")
    p.add_argument("--train-fixed", action="store_true",
                   help="also fine-tune the non-morphed layers (ours; the paper keeps them at the base's)")
    p.add_argument("--fixed-lr-scale", type=float, help="their learning rate relative to --lr")
    p.add_argument("--fixed-init", choices=FIXED_INITS,
                   help="base: the fixed layers start as the base's; fresh: Fixup-style (He stem and shortcuts, "
                        "zero classifier), so a fresh INR's identity blocks form a working CNN at once")
    p.add_argument("--clip", type=float, help="gradient-norm clip")
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--val-widths", type=int, nargs="+")
    p.add_argument("--val-every", type=int)
    p.add_argument("--val-limit", type=int, help="VAL images per width during training")
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this wall time")
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--seed", type=int)
    p.add_argument("--inr-path", choices=INR_PATHS,
                   help="batched: equal-sized INR heads per launch (the default); reference: kernels.reference "
                        "head by head (the same math, slower)")
    p.add_argument("--ckpt-min-seconds", type=float, help="least time between scratch checkpoints (default 60)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's TrainConfig: the recipe's keys (if any), overridden by the flags given."""
    from service.training.hypernet_inputs import TrainConfig

    base = Path(args.base)
    if not base.is_file():
        raise InvalidParameter(f"base model {base} does not exist (train and permute it first: "
                               f"`neumeta train base`, then `neumeta train permute`; see docs/TRAINING.md)")
    init_from = getattr(args, "init_from", None)
    if init_from and not Path(init_from).is_file():
        raise InvalidParameter(f"--init-from {init_from} does not exist")
    resolve_device(getattr(args, "device", "auto"))  # fail before any data is read
    keys = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in keys}
    if "widths_train" in given:
        given["widths_train"] = tuple(given["widths_train"])
    given["base"], given["out"] = str(base), args.out
    return recipes.resolve(args.recipe, given)


def cmd_train_hypernet(args: argparse.Namespace, launcher: str = "neumeta") -> int:
    from service.training.hypernet import Trainer

    cfg = config_from_args(args)
    trainer = Trainer(cfg, force=args.force)
    if trainer.rank == 0:
        # The exact command goes into the run directory; ship.py copies it into the manifest.
        (Path(cfg.out) / "command.txt").write_text(shlex.join([*launcher.split(), *sys.argv[1:]]) + "\n")
    result = trainer.run()
    if trainer.rank == 0:
        print(json.dumps(result))
    return 0


def register(train_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = train_subparsers.add_parser("hypernet", help="train the NeuMeta INR on a permuted base model")
    add_arguments(p)
    p.set_defaults(func=cmd_train_hypernet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.training.hypernet")
    add_arguments(parser)
    args = parser.parse_args(argv)
    world = os.environ.get("WORLD_SIZE", "1")
    launcher = f"torchrun --nproc_per_node {world} -m service.training.hypernet" if world != "1" \
        else "python -m service.training.hypernet"
    return cmd_train_hypernet(args, launcher)
