"""The ``neumeta`` command.

Each module in ``COMMAND_MODULES`` adds its subcommands with ``register(subparsers)``; a
subcommand sets ``func`` (``args -> exit code``) with ``set_defaults``. ``main`` turns every
expected failure into one line ``error: <code>: <message>`` on stderr and a non-zero exit:
2 for usage and validation errors, 1 for everything else (bugs included: they say
``internal`` and suggest ``--debug``, which re-raises with the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from service.constants import BACKENDS, DTYPES, WEIGHT_FORMATS  # torch-free: `neumeta --help` stays fast

if TYPE_CHECKING:
    from service.hypernet.checkpoint import Checkpoint

# Modules whose ``register(subparsers)`` adds subcommands, in help order.
COMMAND_MODULES: list[str] = [
    "service.cli",
    "service.serving.server",
    "service.training.commands",
    "service.training.eval_commands",
    "kernels.bench",
]

VALIDATION_STATUSES = (404, 422)  # unknown_arch, width_out_of_range, invalid_parameter
# Import names of pyproject's [train] extra: the serving install (and the image) lacks them.
TRAIN_EXTRA_MODULES = ("matplotlib", "fast_tsp", "tqdm")


class CommandError(Exception):
    """A failure already phrased for the user: ``error: <code>: <message>``, exit ``exit_code``."""

    def __init__(self, code: str, message: str, exit_code: int):
        super().__init__(message)
        self.code, self.message, self.exit_code = code, message, exit_code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line with the documented code (subparsers inherit this)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: invalid_parameter: {self.prog}: {message} (see --help)\n")
        sys.exit(2)


# ---------------------------------------------------------------------------------------------
# core subcommands: generate, archs, inspect


def _settings_paths() -> tuple[list[Path], str]:
    """Checkpoint paths from Settings (NEUMETA_CHECKPOINT_DIR / NEUMETA_CHECKPOINTS), and where."""
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CommandError("invalid_parameter", f"bad NEUMETA_ settings: {first['msg']}", 2) from None
    where = ", ".join(map(str, settings.checkpoints)) if settings.checkpoints else str(settings.checkpoint_dir)
    return settings.checkpoint_paths(), where


def _load_for_arch(arch: str, checkpoint: Path | None) -> Checkpoint:
    from service.errors import UnknownArch
    from service.hypernet.checkpoint import load_checkpoint
    from service.serving.catalog import Catalog

    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        if ckpt.manifest.arch != arch:
            raise UnknownArch(f"checkpoint {checkpoint} serves arch {ckpt.manifest.arch!r}, not {arch!r}")
        return ckpt
    paths, where = _settings_paths()
    if not paths:
        raise UnknownArch(f"unknown arch {arch!r}: no checkpoints found in {where} (pass --checkpoint PATH)")
    return Catalog.from_paths(paths).get(arch)


def _check_output(path: Path) -> None:
    """Refuse an unwritable destination before spending time on generation."""
    from service.errors import InvalidParameter

    parent = path.parent  # Path("m.onnx").parent is Path(".")
    if path.is_dir():
        raise InvalidParameter(f"output {path} is a directory")
    if not parent.is_dir():
        raise InvalidParameter(f"output directory {parent} does not exist or is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidParameter(f"output directory {parent} is not writable")


def cmd_generate(args: argparse.Namespace) -> int:
    from service.atomic import write_atomic
    from service.serving.pipeline import pin_generation_threads, render_model

    out = Path(args.output)
    _check_output(out)  # --dtype was checked by argparse's choices, the rest by render_model's resolve
    start = time.perf_counter()
    ckpt = _load_for_arch(args.arch, args.checkpoint)
    pin_generation_threads()  # the bytes the service would serve for this request
    blob = render_model(ckpt, args.width, dtype=args.dtype, samples=args.samples, backend=args.backend,
                        export_format=args.format)
    try:
        write_atomic(out, blob.data)
    except OSError as exc:  # e.g. root on a read-only or pseudo file system, or a full disk
        raise CommandError("internal", f"cannot write {out}: {exc.strerror or exc}", 1) from None
    seconds = time.perf_counter() - start
    print(f"wrote {out} bytes={len(blob.data)} sha256={blob.sha256} params={blob.params} width={blob.width} "
          f"dtype={blob.dtype} samples={blob.samples} backend={blob.backend} format={blob.format} "
          f"seconds={seconds:.2f}")
    return 0


def cmd_archs(args: argparse.Namespace) -> int:
    from service.serving.catalog import Catalog

    paths = list(args.checkpoint) if args.checkpoint else _settings_paths()[0]
    print(json.dumps(Catalog.from_paths(paths).describe(), indent=2))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from service.export.inspect import describe_onnx

    path = Path(args.file)
    summary = describe_onnx(path.read_bytes(), where=str(path))
    print(json.dumps({"file": str(path), **summary}, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("generate", help="generate a network of one width: ONNX, or safetensors weights")
    p.add_argument("--arch", required=True, help="catalog id, e.g. resnet20")
    p.add_argument("--width", required=True, type=int, help="inner width on the stage-3 scale (full = 64)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weight storage; IO stays float32")
    p.add_argument("--samples", type=int, default=None, help="K noisy samples to average (default: manifest's)")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="hypernetwork evaluator")
    p.add_argument("--checkpoint", type=Path, default=None, help="use this checkpoint instead of the catalog")
    p.add_argument("--format", default="onnx", choices=WEIGHT_FORMATS,
                   help="onnx (default), or safetensors: the folded PyTorch state_dict, e.g. a --base "
                        "(KD teacher) for `neumeta train hypernet`")
    p.add_argument("-o", "--output", required=True, help="file to write (atomically)")
    p.set_defaults(func=cmd_generate)

    p = subparsers.add_parser("archs", help="print the catalog of servable archs as JSON")
    p.add_argument("--checkpoint", type=Path, action="append", help="checkpoint file (repeatable); "
                   "default: NEUMETA_CHECKPOINTS or the shipped ones")
    p.set_defaults(func=cmd_archs)

    p = subparsers.add_parser("inspect", help="print an ONNX file's metadata, params, size and IO as JSON")
    p.add_argument("file", help="ONNX file")
    p.set_defaults(func=cmd_inspect)


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neumeta", description="NeuMeta weight service: ResNet20 of any width as ONNX.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _classify(exc: BaseException) -> CommandError | None:
    """The one-line form of an expected failure, or None for anything else (a bug)."""
    from kernels.dispatch import BackendUnavailable
    from service.errors import NeuMetaError

    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, NeuMetaError):
        return CommandError(exc.code, exc.message, 2 if exc.status in VALIDATION_STATUSES else 1)
    if isinstance(exc, BackendUnavailable):
        return CommandError("invalid_parameter", str(exc), 2)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in TRAIN_EXTRA_MODULES:
        return CommandError("internal", f"{exc.name} is not installed: training, eval and plots need the "
                            "train extra (pip install 'neumeta-serve[train]')", 1)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return CommandError("internal", f"{where}{exc.strerror or exc}", 1)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP threads that spin at barriers steal the core that the event loop or another worker
    # needs: a cold width-64 K=5 generation took 1.9 s spinning vs 0.6 s passive on 2 busy cores
    # (docs/BENCHMARKS.md). Must be set before torch loads its OpenMP runtime.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`neumeta archs | head`): not worth a message. Point stdout at
        # devnull so the interpreter's final flush does not raise again (Python docs, signal module).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if args.debug:
            raise
        failure = _classify(exc) or CommandError(
            "internal", f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)
        message = " ".join(failure.message.split())  # always one line
        sys.stderr.write(f"error: {failure.code}: {message}\n")
        return failure.exit_code


if __name__ == "__main__":
    sys.exit(main())
