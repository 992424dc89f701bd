"""`neumeta-cache`: list, prune and verify the local model cache (no server needed)."""

from __future__ import annotations

import argparse
import re
import sys
import time

from neumeta_client.cache import ModelCache
from neumeta_client.constants import ENV_CACHE_DIR, cache_dir_from_env
from neumeta_client.housekeeping import DEFAULT_GRACE_S, CacheReport, prune_cache, scan_cache

_SIZE = re.compile(r"(?i)\s*([0-9]+(?:\.[0-9]+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*")
_SIZE_UNITS = {None: 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw])\s*")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """'500MB', '1.5GiB', '1000' (bytes) -> bytes."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500MB, 2GiB, 1000000)")
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' -> seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30d, 12h, 90m)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def human_size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def human_duration(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"


def human_age(seconds: float) -> str:
    return "just now" if seconds < 60 else f"{human_duration(seconds)} ago"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neumeta-cache", description="List, prune and verify the local NeuMeta model cache.")
    parser.add_argument("--cache-dir", help=f"cache root (default: ${ENV_CACHE_DIR} or ~/.cache/neumeta)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("scan", help="list cached models, orphaned blobs and partial downloads")
    prune = commands.add_parser(
        "prune", help="remove orphaned blobs; with options, old or least recently used models too",
        description="Always removes blobs no ref names (older checkpoints' models). Keys being pulled "
                    "right now are skipped.")
    prune.add_argument("--max-size", type=parse_size, help="evict least recently used models until the cache "
                                                           "fits, e.g. 200MB")
    prune.add_argument("--unused-for", type=parse_duration, help="evict models no pull used for this long, e.g. 30d")
    prune.add_argument("--partials", action="store_true", help="also remove interrupted downloads "
                                                               "(a later pull starts them over)")
    prune.add_argument("--grace", type=parse_duration, default=DEFAULT_GRACE_S,
                       help="keep models used and blobs written within this long (default: 1h; 0s: none)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    commands.add_parser("verify", help="re-hash every blob; delete those whose bytes do not match their name")
    return parser


def print_report(report: CacheReport, now: float) -> None:
    print(f"{'ARCH':<16} {'WIDTH':>5} {'DTYPE':<8} {'SIZE':>9} {'LAST USED':>10} {'CHECKPOINT':<12} KEY")
    for model in reversed(report.models):  # most recently used first, like a shell history
        ref = model.ref
        size = human_size(ref.size) if model.present else "missing"
        print(f"{ref.arch or '?':<16} {ref.width if ref.width is not None else '?':>5} {ref.dtype or '?':<8} "
              f"{size:>9} {human_age(now - model.last_used):>10} {ref.checkpoint or '?':<12} {model.key}")
    print(f"\n{len(report.models)} models; {len(report.orphan_blobs)} orphaned blobs "
          f"({human_size(report.orphan_bytes)}, `neumeta-cache prune` removes them); {len(report.partials)} "
          f"partial downloads ({human_size(report.partial_bytes)}); {human_size(report.size_on_disk)} on disk "
          f"in {report.root}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cache = ModelCache(cache_dir_from_env(args.cache_dir))
    now = time.time()
    try:
        if args.command == "scan":
            print_report(scan_cache(cache), now)
        elif args.command == "prune":
            result = prune_cache(cache, max_size=args.max_size, unused_for_s=args.unused_for,
                                 partials=args.partials, grace_s=args.grace, dry_run=args.dry_run, now=now)
            verb = "would remove" if result.dry_run else "removed"
            for key in result.removed_models:
                print(f"{verb} model {key}")
            for path in (*result.removed_blobs, *result.removed_partials):
                print(f"{verb} {path}")
            for key in result.skipped_busy:
                print(f"skipped {key}: a pull is in progress", file=sys.stderr)
            print(f"{verb} {len(result.removed_models)} models, {len(result.removed_blobs)} blobs, "
                  f"{len(result.removed_partials)} partials: {human_size(result.freed_bytes)} "
                  f"(kept: what was used or written in the last {human_duration(args.grace)})")
        else:
            bad = cache.verify()
            for path in bad:
                print(f"deleted corrupt blob {path}")
            print(f"{len(bad)} corrupt blobs" if bad else "every blob matches its sha256")
            return 1 if bad else 0
    except OSError as exc:
        print(f"neumeta-cache: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
