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
from pathlib import Path

from service.errors import InvalidParameter
from service.training.data import DATASETS
from service.training.hypernet_inputs import REC_WIDTHS, SCOPES, WIDTH_SAMPLINGS, ZERO_INITS
from service.training.precision import DEVICES, PRECISIONS, resolve_device


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="permuted folded full-width model (.safetensors)")
    p.add_argument("--scope", default="all", choices=SCOPES, help="which blocks morph")
    p.add_argument("--out", required=True, help="run directory (resumes from its last.pt)")
    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    p.add_argument("--data", default=None, help="dataset directory (default: the Debian package's)")
    p.add_argument("--steps", type=int, default=2000, help="task steps after the warm start")
    p.add_argument("--warm-steps", type=int, default=200, help="data-free reconstruction-only steps first")
    p.add_argument("--batch", type=int, default=128, help="images per step per rank")
    p.add_argument("--widths-train", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="width range sampled per step (default: 16 64)")
    p.add_argument("--width-sampling", default="uniform", choices=WIDTH_SAMPLINGS,
                   help="uniform: one width drawn per step; sandwich: steps cycle MIN, MAX, a uniform draw")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--freqs", type=int, default=8)
    p.add_argument("--band-limit", type=float, default=0.0,
                   help="damp channel-ratio frequencies a narrow width cannot sample (0: off; 0.29 = one "
                        "channel's box); exact at full width, so a continuation may switch it on; needs "
                        "--head-per-block")
    p.add_argument("--channel-embeddings", action="store_true",
                   help="a learned vector per full-width channel of every generated tensor, box-averaged to "
                        "narrower widths (needs --head-per-block; with --init-from, added at zero)")
    p.add_argument("--embed-lr-scale", type=float, default=1.0,
                   help="the channel embeddings' learning rate relative to --lr")
    p.add_argument("--head-per-block", action="store_true",
                   help="one INR head per generated tensor (role x block) instead of per role: more parameters, "
                        "the same work per step; with --init-from a per-role INR, each block starts from its role's head")
    p.add_argument("--channel-heads", type=int, default=1,
                   help="heads per generated tensor, each owning a band of its output channels (needs "
                        "--head-per-block): more parameters, the same work per step; with --init-from a "
                        "per-tensor INR, every band starts from its tensor's head")
    p.add_argument("--noise", type=float, default=1.0, help="coordinate noise in channels (0 = none)")
    p.add_argument("--zero-init", default="conv2", choices=ZERO_INITS,
                   help="INR heads whose output layer starts at zero (conv2: blocks start as identities, "
                        "conv1 at He scale)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--lambda-rec", type=float, default=1.0)
    p.add_argument("--lambda-norm", type=float, default=1e-4)
    p.add_argument("--lambda-kd", type=float, default=0.0,
                   help="weight of distillation from the base's logits (0 = off, the paper)")
    p.add_argument("--kd-temperature", type=float, default=2.0)
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="bf16: ResNet forward under bfloat16 autocast + channels-last (INR stays fp32); "
                        "auto: bf16 where the hardware runs it natively, else fp32")
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when available")
    p.add_argument("--init-from", default=None,
                   help="continue a shipped checkpoint: its INR weights and fixed layers (--base teaches); a larger "
                        "--hidden grows its INR, computing the same function, before training goes on")
    p.add_argument("--train-fixed", action="store_true",
                   help="also fine-tune the non-morphed layers (ours; the paper keeps them at the base's)")
    p.add_argument("--fixed-lr-scale", type=float, default=0.1, help="their learning rate relative to --lr")
    p.add_argument("--rec-widths", default="all", choices=REC_WIDTHS,
                   help="reconstruct channel slices at every width (all) or only the full model (full)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--val-widths", type=int, nargs="+", default=None)
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--val-limit", type=int, default=2000, help="VAL images per width during training")
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this wall time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace):
    from service.training.hypernet_inputs import TrainConfig

    base = Path(args.base)
    if not base.is_file():
        raise InvalidParameter(f"base model {base} does not exist (train and permute it first: "
                               f"`neumeta train base`, then permute)")
    if args.init_from and not Path(args.init_from).is_file():
        raise InvalidParameter(f"--init-from {args.init_from} does not exist")
    resolve_device(args.device)  # fail before any data is read
    lo, hi = args.widths_train or TrainConfig.widths_train  # the dataclass's default range
    return TrainConfig(  # validates the values themselves
        base=str(base), out=args.out, scope=args.scope, dataset=args.dataset, data=args.data,
        steps=args.steps, warm_steps=args.warm_steps, batch=args.batch, widths_train=(lo, hi), width_sampling=args.width_sampling,
        hidden=args.hidden, layers=args.layers, freqs=args.freqs, band_limit=args.band_limit, noise=args.noise,
        head_per_block=args.head_per_block, channel_heads=args.channel_heads,
        channel_embeddings=args.channel_embeddings,
        embed_lr_scale=args.embed_lr_scale, zero_init=args.zero_init,
        lr=args.lr, weight_decay=args.weight_decay,
        lambda_rec=args.lambda_rec, lambda_norm=args.lambda_norm,
        lambda_kd=args.lambda_kd, kd_temperature=args.kd_temperature, precision=args.precision, device=args.device,
        init_from=args.init_from, train_fixed=args.train_fixed, fixed_lr_scale=args.fixed_lr_scale,
        rec_widths=args.rec_widths, clip=args.clip,
        ema_decay=args.ema_decay, val_widths=args.val_widths or [], val_every=args.val_every,
        val_limit=args.val_limit, ckpt_every=args.ckpt_every, max_minutes=args.max_minutes,
        threads=args.threads, seed=args.seed, progress=not args.no_progress,
    )


def cmd_train_hypernet(args: argparse.Namespace, launcher: str = "neumeta") -> int:
    from service.training.hypernet import Trainer

    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    if trainer.rank == 0:
        # The exact command goes into the run directory; ship.py copies it into the manifest.
        (Path(cfg.out) / "command.txt").write_text(shlex.join([*launcher.split(), *sys.argv[1:]]) + "\n")
    result = trainer.run()
    if trainer.rank == 0:
        print(json.dumps(result))
    return 0


def register(train_subparsers: argparse._SubParsersAction) -> None:
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
