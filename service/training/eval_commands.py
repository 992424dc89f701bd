"""``neumeta eval``: test-set table + plots of a checkpoint against slicing, pruning, individual models;
``neumeta compare``: two checkpoints of one arch, paired per image (should NEW replace OLD?): the
verdict on VAL, the same table on the test set as a report.

    neumeta eval --checkpoint service/checkpoints/resnet20-fmnist-all.safetensors \
        --base runs/base/permuted.safetensors --individual runs/individual-w16 ... --out docs/results
    neumeta compare runs/candidate.safetensors service/checkpoints/resnet20-fmnist-all.safetensors
``neumeta redundancy``: how many distinct inner channels each block of a generated network has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.errors import InvalidParameter
from service.training.precision import DEVICES, resolve_device


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from service.hypernet import load_checkpoint
    from service.training.data import load_dataset
    from service.training.evaluate import (
        carry_baselines,
        check_carryable,
        evaluate,
        table,
        table_identity,
        write_outputs,
    )
    from service.training.folded import load_folded

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)  # fail before anything is read
    ckpt = load_checkpoint(args.checkpoint)
    base = None
    if args.base is not None:
        if not Path(args.base).exists():
            raise InvalidParameter(f"--base {args.base} does not exist")
        base, _ = load_folded(args.base)
    if args.subset < 1:
        raise InvalidParameter("--subset must be >= 1")
    previous = None
    if args.baselines_from is not None:
        if base is not None:
            raise InvalidParameter("give --base or --baselines-from, not both")
        try:
            previous = json.loads(args.baselines_from.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidParameter(f"--baselines-from {args.baselines_from}: {exc}") from exc
    splits = load_dataset(ckpt.manifest.dataset, args.data)
    if previous is not None:  # before minutes of evaluation, not after
        try:
            check_carryable(table_identity(ckpt, args.subset, len(splits.test)), previous, args.baselines_from.name)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from exc
    extra = (1,) if args.samples is None else args.samples
    result = evaluate(ckpt, splits, base, individual=args.individual or (), subset=args.subset,
                      extra_samples=extra, key_widths=args.key_widths, progress=not args.no_progress,
                      device=device)
    if previous is not None:
        result = carry_baselines(result, previous, args.baselines_from.name)
    print(table(result))
    for path in write_outputs(result, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import torch

    from service.hypernet import load_checkpoint
    from service.training.compare import compare_checkpoints, compare_table
    from service.training.data import load_dataset

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.limit is not None and args.limit < 1:
        raise InvalidParameter("--limit must be >= 1")
    new, old = load_checkpoint(args.new), load_checkpoint(args.old)
    splits = load_dataset(new.manifest.dataset, args.data)
    # The verdict is taken on VAL (model selection); the test set is paired the same way, only to report.
    per_split = {name: compare_checkpoints(new, old, split, splits.info, widths=args.widths, limit=args.limit,
                                           min_above=args.min_above, device=device)
                 for name, split in (("val", splits.val), ("test", splits.test))}
    result = {"decided_on": "val", "better": per_split["val"]["better"], **per_split}
    print(compare_table(per_split["val"], "VAL (decides)"))
    print(compare_table(per_split["test"], "TEST (reports only)"))
    print(f"verdict (on VAL): {'better' if result['better'] else 'not better'}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


def cmd_redundancy(args: argparse.Namespace) -> int:
    from safetensors import SafetensorError

    from service.hypernet import generate, load_checkpoint
    from service.training.folded import load_folded
    from service.training.redundancy import block_redundancy, redundancy_table

    if not 0 < args.energy < 1:
        raise InvalidParameter("--energy must be in (0, 1)")
    ckpt = load_checkpoint(args.checkpoint)
    columns = {f"{ckpt.manifest.arch} w{args.width}": block_redundancy(generate(ckpt, args.width), args.energy)}
    if args.reference is not None:
        try:
            reference, _ = load_folded(args.reference)
            columns[args.reference.stem] = block_redundancy(reference, args.energy)
        except (OSError, KeyError, ValueError, SafetensorError) as exc:  # missing, not safetensors, lacks a tensor
            raise InvalidParameter(f"--reference {args.reference}: not a folded ResNet20 state ({exc})") from exc
    print(redundancy_table(columns))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"arch": ckpt.manifest.arch, "checkpoint": ckpt.short_sha, "width": args.width,
                                        "energy": args.energy, "columns": columns}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


def _add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    """Where the test images come from and where the generated networks run (eval and compare)."""
    p.add_argument("--data", default=None, help="dataset directory (default: the Debian package's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where the generated networks run (auto: CUDA when available)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("eval", help="test-set accuracy per width vs baselines: JSON table + PNG plots")
    p.add_argument("--checkpoint", required=True, type=Path, help="service checkpoint (.safetensors)")
    p.add_argument("--base", type=Path, default=None,
                   help="the permuted folded full model the INR was trained on (slicing/pruning baselines)")
    p.add_argument("--baselines-from", type=Path, default=None,
                   help="without --base: carry the slicing/pruning/base rows of an earlier eval JSON of the "
                        "same arch on the same images (e.g. the shipped docs/results/eval-resnet20.json)")
    p.add_argument("--individual", nargs="*", type=Path, default=None,
                   help="individually trained runs (dir with folded.safetensors, or the file); missing ones "
                        "are reported as not yet trained")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="where the JSON and plots go")
    p.add_argument("--subset", type=int, default=1000,
                   help="test images for the every-width sweep; the key widths use all of them")
    p.add_argument("--key-widths", type=int, nargs="*", default=[16, 32, 48, 64],
                   help="widths evaluated on the full test set")
    p.add_argument("--samples", type=int, nargs="*", default=None,
                   help="extra K values to evaluate besides the manifest's default (default: 1; "
                        "give the flag alone for the default K only)")
    _add_scoring_arguments(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser(
        "compare", help="NEW minus OLD checkpoint, paired per image per width: decided on VAL, reported on test")
    p.add_argument("new", type=Path, help="candidate checkpoint (.safetensors)")
    p.add_argument("old", type=Path, help="the checkpoint it would replace")
    p.add_argument("--widths", type=int, nargs="+", default=None,
                   help="default: the narrowest allowed width and the allowed ones of 16/32/48/64")
    p.add_argument("--min-above", type=int, default=None,
                   help="widths that must gain for 'better' (default: all but one); any 95%% interval "
                        "wholly below 0 vetoes")
    p.add_argument("--limit", type=int, default=None, help="first N images of each split (default: all)")
    p.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON here")
    _add_scoring_arguments(p)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("redundancy", help="distinct inner channels per block of a generated network")
    p.add_argument("--checkpoint", required=True, type=Path, help="service checkpoint (.safetensors)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--reference", type=Path, default=None,
                   help="a folded state to set beside it (e.g. the teacher or base, .safetensors)")
    p.add_argument("--energy", type=float, default=0.99, help="share of the energy the distinct channels hold")
    p.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    p.set_defaults(func=cmd_redundancy)
