"""Service benchmark: cold ``/model`` latency per width, then cache-hit latency and throughput
against a static server that returns the same bytes from memory (the ceiling for a hit).

    python -m benchmarks.serve_load [--checkpoint FILE] [--duration 5] [--rounds 3] [--connections 8]

Both servers are single uvicorn processes on this machine; the load generator is ``wrk`` when it
is installed, else a bounded-concurrency httpx client. Without ``--checkpoint`` it uses the shipped
``resnet20`` checkpoint if there is one, else a random one with the default INR size (same cost
per generation as a trained one; the numbers say which).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

WIDTHS = (16, 32, 64)
HIT_WIDTH = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_checkpoint(path: Path) -> Path:
    import torch

    from service.archs import ResNet20, fold_batchnorm
    from service.hypernet.checkpoint import Manifest, fixed_tensor_shapes, save_checkpoint
    from service.hypernet.model import HyperNet, HyperNetConfig

    torch.manual_seed(0)
    manifest = Manifest.model_validate({
        "arch": "resnet20", "scope": "all", "dataset": "fashion-mnist", "in_channels": 1, "input_size": [28, 28],
        "num_classes": 10, "labels": [str(i) for i in range(10)],
        "preprocess": {"mean": [0.286], "std": [0.353], "input_shape": [1, 28, 28]},
        "widths_trained": {"min": 8, "max": 64}, "widths_allowed": {"min": 8, "max": 64}, "default_width": 64,
        "inr": HyperNetConfig().model_dump(), "default_samples": 1,
    })
    folded = fold_batchnorm(ResNet20(1, 10).eval())
    fixed = {name: folded[name] for name in fixed_tensor_shapes(manifest)}
    save_checkpoint(path, manifest, HyperNet(manifest.inr), fixed)
    return path


def _pick_checkpoint(given: Path | None, workdir: Path) -> tuple[Path, str]:
    if given is not None:
        return given, f"given checkpoint {given}"
    from service.settings import SHIPPED_CHECKPOINTS

    for path in sorted(SHIPPED_CHECKPOINTS.glob("*.safetensors")):
        from service.hypernet.checkpoint import load_checkpoint

        if load_checkpoint(path).manifest.arch == "resnet20":
            return path, f"shipped checkpoint {path.name}"
    return _random_checkpoint(workdir / "random.safetensors"), "random checkpoint, default INR size (no shipped one)"


def _start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"server {args} did not start") from None
            time.sleep(0.2)


def _wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def pct(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)$", out, re.MULTILINE)
        assert match is not None, f"no {p}% line in the load tool's report"
        value, unit = match.groups()
        return float(value) * scale[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50_ms": pct("50"), "p99_ms": pct("99"),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "errors": float(errors.group(1)) if errors else 0.0}


async def _httpx_load(url: str, duration: int, connections: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await client.get(url)
            latencies.append((time.perf_counter() - t0) * 1e3)
            errors += r.status_code != 200

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections), timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return {"p50_ms": q[49], "p99_ms": q[98], "rps": len(latencies) / elapsed, "errors": float(errors)}


def load(url: str, duration: int, connections: int) -> tuple[dict[str, float], str]:
    if shutil.which("wrk"):
        return _wrk(url, duration, connections), f"wrk -t1 -c{connections} -d{duration}s"
    return asyncio.run(_httpx_load(url, duration, connections)), f"httpx, {connections} connections, {duration}s"


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def static_app(blob_path: str):  # the baseline: uvicorn + a bare ASGI app returning bytes from memory
    body = Path(blob_path).read_bytes()
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per server and round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating load rounds per server")
    parser.add_argument("--static", metavar="BLOB", help=argparse.SUPPRESS)  # internal: run the baseline server
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.static:
        import uvicorn

        uvicorn.run(static_app(args.static), host="127.0.0.1", port=args.port, log_level="warning",
                    access_log=False)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="neumeta-bench-"))
    ckpt, ckpt_note = _pick_checkpoint(args.checkpoint, workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUMETA_")}
    port, static_port = _free_port(), _free_port()
    service = _start(["-m", "service.serving.server", "--port", str(port), "--checkpoint", str(ckpt)], env, port)
    procs = [service]
    try:
        from service.hypernet.checkpoint import load_checkpoint

        arch = load_checkpoint(ckpt).manifest.arch  # the checkpoint's own id, not always resnet20
        base = f"http://127.0.0.1:{port}/model?arch={arch}"
        load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"# {ckpt_note}; {platform.machine()}, {os.cpu_count()} CPUs, load average {load_avg} at start")
        print("| width | cold latency (ms) | bytes | X-Cache |\n|---|---|---|---|")
        for width in WIDTHS:
            t0 = time.perf_counter()
            r = httpx.get(f"{base}&width={width}", timeout=300)
            cold_ms = (time.perf_counter() - t0) * 1e3
            if r.status_code != 200:  # timing error responses would report nonsense
                raise SystemExit(f"error: GET {base}&width={width} answered {r.status_code}: {r.text[:200]}")
            print(f"| {width} | {cold_ms:.0f} | {len(r.content)} | {r.headers.get('x-cache')} |")
        hit_url = f"{base}&width={HIT_WIDTH}"
        blob = workdir / "blob.onnx"
        blob.write_bytes(httpx.get(hit_url).content)
        procs.append(_start(["-m", "benchmarks.serve_load", "--static", str(blob), "--port", str(static_port)], env,
                            static_port))
        # Alternate the two servers for several rounds and keep the median of each metric: on a
        # shared machine, load from other processes then hits both sides alike.
        rounds: dict[str, list[dict[str, float]]] = {"hit": [], "static": []}
        for _ in range(args.rounds):
            hit, how = load(hit_url, args.duration, args.connections)
            rounds["hit"].append(hit)
            rounds["static"].append(load(f"http://127.0.0.1:{static_port}/", args.duration, args.connections)[0])
        hit, static = (_median(rounds[name]) for name in ("hit", "static"))
        print(f"\n# cache hits, width {HIT_WIDTH} ({blob.stat().st_size} bytes), load: {how}, "
              f"median of {args.rounds} alternating rounds")
        print("| server | p50 (ms) | p99 (ms) | req/s | non-2xx |\n|---|---|---|---|---|")
        for name, m in (("neumeta /model (hit)", hit), ("static bytes (uvicorn, bare ASGI)", static)):
            print(f"| {name} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['rps']:.0f} | {m['errors']:.0f} |")
        print(f"\nhit throughput = {100 * hit['rps'] / static['rps']:.0f}% of the static baseline; load average "
              + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + " at the end")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
