"""``neumeta serve``: run the app factory under uvicorn.

Command-line options override the ``NEUMETA_*`` environment; the merged settings are validated
here first (a bad checkpoint path fails before any port is bound), then exported to the
environment so that every uvicorn worker process builds the same app.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from service.constants import BACKENDS
from service.logging import configure_logging
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI  # imported by the factory itself, in the worker process

APP_FACTORY = "service.serving.server:app_for_serving"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("serve", help="run the weight service (HTTP)",
                                   description="Serve ONNX models of any width over HTTP.")
    parser.add_argument("--host", help="interface to bind (NEUMETA_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (NEUMETA_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (NEUMETA_WORKERS, default 1)")
    parser.add_argument("--checkpoint", action="append", metavar="FILE",
                        help="serve this checkpoint instead of the shipped ones (repeatable)")
    parser.add_argument("--backend", choices=BACKENDS, help="NEUMETA_BACKEND")
    parser.add_argument("--redis-url", help="NEUMETA_REDIS_URL (default: embedded cache only)")
    parser.set_defaults(func=serve)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in ("host", "port", "workers", "backend", "redis_url"):
        value = getattr(args, name, None)
        if value is not None:
            env[f"NEUMETA_{name.upper()}"] = str(value)
    if getattr(args, "checkpoint", None):
        env["NEUMETA_CHECKPOINTS"] = ",".join(os.path.abspath(p) for p in args.checkpoint)
    return env


def app_for_serving() -> FastAPI:  # runs in each uvicorn worker process
    from service.api.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = create_app(settings)
    # Everything imported so far (torch, onnx, fastapi: ~10^6 objects) lives as long as the process;
    # move it out of the cyclic GC's reach so full collections under load do not rescan it (p99).
    gc.collect()
    gc.freeze()
    return app


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # also for `python -m`; see service.cli.main
    os.environ.update(_overrides(args))
    get_settings.cache_clear()
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        # Same one-line form as every other `neumeta` failure (service.cli).
        print(f"error: invalid_parameter: serve: invalid settings: {where}: {first['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        APP_FACTORY, factory=True, host=settings.host, port=settings.port, workers=settings.workers,
        access_log=False,  # service.api.middleware writes one JSON line per request instead
        log_config=None,  # keep configure_logging's handlers
        proxy_headers=True, server_header=False,
        # h11 with a bounded head (size and read time), not httptools: see service.api.protocol.
        http="service.api.protocol:BoundedH11Protocol", h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m service.serving.server``) until the CLI registers the verb."""
    parser = argparse.ArgumentParser(prog="neumeta")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(argv if argv is not None else sys.argv[1:])])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
