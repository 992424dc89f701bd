"""Revalidation cost through the shipped nginx: what a device's ``If-None-Match`` on ``/model`` costs
with the replica's digest index warm (it served the key) and cold (a fresh replica, e.g. after a
restart or on another replica), the latter without Redis (it must regenerate to know the digest)
and with Redis holding the blob (it reads and hashes it).

    python -m benchmarks.revalidate [--width 64] [--requests 200] [--restarts 3]

Needs ``nginx`` (and ``redis-server`` for the Redis rows) on PATH. Uses the shipped ``resnet20``
checkpoint, one ``neumeta serve`` process, nginx with deploy/nginx/nginx.conf (addresses swapped).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.serve_load import _free_port, _pick_checkpoint, _start

NGINX_CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "nginx.conf"


def _nginx(workdir: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    conf = NGINX_CONF.read_text().replace("server neumeta:8000 resolve;", f"server 127.0.0.1:{upstream};")
    conf = conf.replace("resolver 127.0.0.11 valid=10s ipv6=off;", "")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("access_log /dev/stdout;", "access_log off;").replace("/tmp/", f"{workdir}/")
    (workdir / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-e", "stderr",
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def _ms(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=10) if len(samples) > 1 else samples * 9
    return f"median {statistics.median(samples) * 1e3:.2f} ms, p90 {q[8] * 1e3:.2f} ms (n={len(samples)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--requests", type=int, default=200, help="warm revalidations timed")
    parser.add_argument("--restarts", type=int, default=3, help="cold revalidations timed (one per restart)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="neumeta-reval-"))
    workdir.chmod(0o755)  # nginx workers (nobody, when run as root) write the cache under it
    checkpoint, which = _pick_checkpoint(None, workdir)
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NEUMETA_")}, "NEUMETA_PORT": str(port),
           "NEUMETA_CHECKPOINTS": str(checkpoint)}
    serve = ["-m", "service.serving.server"]
    redis = None
    if shutil.which("redis-server"):
        redis_port = _free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                                 stdout=subprocess.DEVNULL)
    nginx, proxy = _nginx(workdir, port)
    params = {"arch": "resnet20", "width": args.width}
    rows: list[str] = []
    try:
        for tier in ["none"] + (["redis"] if redis else []):
            tier_env = dict(env)
            if tier == "redis":
                tier_env["NEUMETA_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            server = _start(serve, tier_env, port)
            with httpx.Client(base_url=f"http://127.0.0.1:{proxy}", timeout=120) as client:
                etag = client.get("/model", params=params).headers["etag"]
                warm = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    r = client.get("/model", params=params, headers={"If-None-Match": etag})
                    warm.append(time.perf_counter() - started)
                    assert r.status_code == 304, r.status_code
                cold = []
                for _ in range(args.restarts):
                    server.terminate(), server.wait(timeout=30)
                    server = _start(serve, tier_env, port)
                    started = time.perf_counter()
                    r = client.get("/model", params=params, headers={"If-None-Match": etag})
                    cold.append(time.perf_counter() - started)
                    assert r.status_code == 304, r.status_code
            server.terminate(), server.wait(timeout=30)
            redis_note = "Redis holds the blob" if tier == "redis" else "no Redis: the replica regenerates"
            rows.append(f"warm digest index ({'with' if tier == 'redis' else 'no'} Redis): {_ms(warm)}")
            rows.append(f"cold digest index ({redis_note}): {_ms(cold)}")
    finally:
        nginx.terminate()
        if redis is not None:
            redis.terminate()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"# {which}, width {args.width}, float32; {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; 304 through nginx (deploy/nginx/nginx.conf) to one `neumeta serve`")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
