"""Client-side latency of each way a pull can go, against a running service.

    python clients/python/scripts/bench_pull.py --server http://127.0.0.1:8000 --arch resnet20 --width 64

Cases (median and p90 over --repeat runs, each in a fresh temporary cache unless noted):
  download   empty cache, so a full GET (the server's cache is warmed by one untimed pull first)
  resume     half the body already in incomplete/, so a Range request for the rest
  revalidate blob cached, so a conditional GET answered 304
  offline    blob cached, offline=True: no network at all
  verify     re-hash every cached blob (Client.verify)
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from neumeta_client import Client
from neumeta_client._protocol import ModelRequest
from neumeta_client.cache import PartialMeta


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="neumeta-bench-"))
    request = ModelRequest(args.arch, args.width, args.dtype)

    with Client(args.server, cache_dir=root / "warm") as warm:  # also fills the server's cache
        body = warm.pull(args.arch, args.width, dtype=args.dtype).read_bytes()
        results = {
            "revalidate": timed(lambda: warm.pull(args.arch, args.width, dtype=args.dtype), args.repeat),
            "verify": timed(warm.verify, args.repeat),
        }
    with Client(args.server, cache_dir=root / "warm", offline=True) as offline:
        results["offline"] = timed(lambda: offline.pull(args.arch, args.width, dtype=args.dtype), args.repeat)

    # Clients (and their TLS contexts) are built before timing: only the pull itself is measured.
    fresh = [Client(args.server, cache_dir=root / f"download{i}") for i in range(args.repeat)]
    todo = iter(fresh)
    results["download"] = timed(lambda: next(todo).pull(args.arch, args.width, dtype=args.dtype), args.repeat)

    resuming = [Client(args.server, cache_dir=root / f"resume{i}") for i in range(args.repeat)]
    sha = hashlib.sha256(body).hexdigest()
    for client in resuming:  # as if a process died half-way through the body
        key = request.cache_key(client.base_url)
        client.cache.partial_path(key).parent.mkdir(parents=True)
        client.cache.partial_path(key).write_bytes(body[: len(body) // 2])
        client.cache.write_partial_meta(key, PartialMeta(f'"{sha}"', sha, len(body)))
    todo = iter(resuming)
    results["resume"] = timed(lambda: next(todo).pull(args.arch, args.width, dtype=args.dtype), args.repeat)
    for client in fresh + resuming:
        client.close()

    print(f"{args.arch} width={args.width} dtype={args.dtype} body={len(body)} bytes, {args.repeat} runs each")
    print(f"{'case':<11} {'median ms':>10} {'p90 ms':>8}")
    for case in ("download", "resume", "revalidate", "offline", "verify"):
        ms = sorted(t * 1e3 for t in results[case])
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        print(f"{case:<11} {statistics.median(ms):>10.2f} {p90:>8.2f}")


if __name__ == "__main__":
    main()
