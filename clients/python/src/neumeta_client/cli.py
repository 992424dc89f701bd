"""`neumeta-pull`: download (or revalidate) one model into the cache and optionally copy it out."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from neumeta_client import errors
from neumeta_client._protocol import ModelRequest
from neumeta_client.client import Client
from neumeta_client.constants import DTYPES, ENV_SERVER

# Most specific first: the first matching class decides the exit code.
EXIT_CODES: list[tuple[type[errors.NeuMetaError], int, str]] = [
    (errors.UnknownArch, 3, "unknown arch"),
    (errors.WidthOutOfRange, 4, "width out of range"),
    (errors.InvalidParameter, 5, "invalid parameter"),
    (errors.NoModelFits, 13, "no model of the family fits the budget and accuracy floor"),
    (errors.Unauthorized, 6, "unauthorized (API key)"),
    (errors.Busy, 7, "server busy, retries exhausted"),
    (errors.ServerError, 8, "server error"),
    (errors.ChecksumMismatch, 9, "checksum mismatch, retries exhausted"),
    (errors.OfflineError, 10, "offline and not cached"),
    (errors.TransportError, 11, "connection failed or timed out"),
    (errors.CacheLockTimeout, 12, "cache lock held by another process"),
    (errors.NeuMetaError, 1, "other error (unexpected response, missing extra, local I/O)"),
]
EXIT_INTERRUPTED = 130


def exit_code_for(error: errors.NeuMetaError) -> int:
    return next(code for cls, code, _ in EXIT_CODES if isinstance(error, cls))


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {what} ({cls.__name__})" for cls, code, what in EXIT_CODES)
    parser = argparse.ArgumentParser(
        prog="neumeta-pull", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pull a ResNet20 of the requested width, or the best of a family for a budget, from a NeuMeta "
                    "service into the local cache, verified by SHA-256. Prints the model's path on stdout and "
                    "what was chosen (arch, width, measured accuracy) on stderr.",
        epilog=f"exit codes:\n    0  ok\n    2  bad command line\n{codes}\n  130  interrupted")
    parser.add_argument("--server", default=os.environ.get(ENV_SERVER),
                        help=f"service base URL (default: ${ENV_SERVER})")
    name = parser.add_mutually_exclusive_group(required=True)
    name.add_argument("--arch", help="catalog id, e.g. resnet20")
    name.add_argument("--family", help="let the server choose the arch and width across this family (e.g. resnet20) "
                                       "from its measured tables; with --max-bytes/--max-params/--min-accuracy")
    parser.add_argument("--width", type=int, help="inner width (--arch; default: the arch's default width)")
    parser.add_argument("--max-params", type=int, help="--arch: largest width with at most this many parameters; "
                                                       "--family: the most accurate model within it")
    parser.add_argument("--max-bytes", type=int, help="--arch: largest width whose ONNX file fits in this many "
                                                      "bytes; --family: the most accurate model within it")
    parser.add_argument("--min-accuracy", type=float, help="--family: the smallest file whose measured test "
                                                           "accuracy (percent) is at least this")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--samples", type=int, help="K, the number of INR samples averaged (server default)")
    parser.add_argument("-o", "--output", type=Path, help="also copy the model to this file (atomically)")
    parser.add_argument("--api-key", help="Bearer token (default: $NEUMETA_API_KEY)")
    parser.add_argument("--cache-dir", help="cache root (default: $NEUMETA_CACHE_DIR or ~/.cache/neumeta)")
    parser.add_argument("--offline", action="store_true", default=None, help="only use the cache")
    parser.add_argument("--retries", type=int, default=4, help="extra attempts on retryable failures")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary on stderr")
    return parser


class ProgressBar:
    """A one-line bar on stderr, redrawn at most 10 times a second, only on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done != total):
            return
        self._last, self._drawn = now, True
        if total:
            filled = int(30 * done / total)
            line = f"[{'#' * filled}{'.' * (30 - filled)}] {done / total:6.1%} {done / 1e6:.2f}/{total / 1e6:.2f} MB"
        else:
            line = f"{done / 1e6:.2f} MB"
        sys.stderr.write(f"\r{line}")
        sys.stderr.flush()

    def finish(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")


def copy_atomically(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".incomplete")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_combination(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that cannot go together are a usage error (exit 2), before anything is sent."""
    if args.family is not None:
        refused = [flag for flag, value in (("--width", args.width), ("--samples", args.samples)) if value is not None]
        if refused:
            parser.error(f"{' and '.join(refused)} cannot be combined with --family: the server chooses the arch "
                         "and width from its measured tables")
        return
    if args.min_accuracy is not None:
        parser.error("--min-accuracy chooses across a family: use --family instead of --arch")
    sizes = [flag for flag, value in (("--width", args.width), ("--max-params", args.max_params),
                                      ("--max-bytes", args.max_bytes)) if value is not None]
    if len(sizes) > 1:
        parser.error(f"argument {sizes[1]}: not allowed with argument {sizes[0]} (give one with --arch)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.server:
        parser.error(f"--server is required (or set ${ENV_SERVER})")
    check_combination(parser, args)
    bar = ProgressBar(enabled=not args.quiet)
    try:
        with Client(args.server, api_key=args.api_key, cache_dir=args.cache_dir, offline=args.offline,
                    retries=args.retries) as client:
            request = ModelRequest(args.arch, args.width, args.dtype, args.samples, args.max_params, args.max_bytes,
                                   args.family, args.min_accuracy)
            path = client.pull(request.arch, request.width, family=request.family, dtype=request.dtype,
                               samples=request.samples, max_params=request.max_params, max_bytes=request.max_bytes,
                               min_accuracy=request.min_accuracy, progress=bar)
            bar.finish()
            ref = client.cache.read_ref(request.cache_key(client.base_url))
        if args.output is not None:
            copy_atomically(path, args.output)
            path = args.output
    except errors.NeuMetaError as exc:
        bar.finish()
        print(f"neumeta-pull: error: {exc.code}: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except OSError as exc:  # writing --output or the cache failed (disk full, permissions)
        bar.finish()
        print(f"neumeta-pull: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.finish()
        print("neumeta-pull: interrupted (a partial download is kept and will resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet and ref is not None:
        accuracy = f" accuracy={ref.accuracy.split(';')[0]}%" if ref.accuracy else ""
        print(f"{ref.arch} width={ref.width} dtype={ref.dtype} params={ref.params} bytes={ref.size}{accuracy} "
              f"sha256={ref.sha256[:12]} checkpoint={ref.checkpoint}", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
