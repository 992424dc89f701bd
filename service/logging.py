"""Logging set-up: one JSON object per line (or plain text for humans), stdlib ``logging`` only.

Fields passed through ``extra=`` (request_id, method, path, status, duration_ms, cache, ...) become
top-level keys of the JSON line, so a log pipeline can filter on them without parsing messages.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
# uvicorn adds "color_message" (the message with ANSI colours): noise in a JSON line.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, message, extras, and exc_info if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Route the root logger (and uvicorn's) to stderr in the chosen format; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_neumeta", False)]:
        root.removeHandler(old)
    handler._neumeta = True  # type: ignore[attr-defined]  # marks our handler so re-configuring replaces it
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own loggers propagate to the root so they share the format; its access log is
    # replaced by our one-line-per-request log (service.api.middleware).
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
