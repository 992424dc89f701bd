"""JSON log lines carry the request fields as top-level keys."""

from __future__ import annotations

import json
import logging
import sys

from service.logging import JsonFormatter, configure_logging


def record(**extra) -> logging.LogRecord:
    rec = logging.LogRecord("neumeta.access", logging.INFO, __file__, 1, "GET %s %d", ("/model", 200), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_line_has_message_and_extras():
    line = JsonFormatter().format(record(request_id="abc", status=200, duration_ms=1.5, cache="hit"))
    entry = json.loads(line)
    assert entry["message"] == "GET /model 200" and entry["level"] == "INFO" and entry["logger"] == "neumeta.access"
    assert (entry["request_id"], entry["status"], entry["duration_ms"], entry["cache"]) == ("abc", 200, 1.5, "hit")
    assert entry["ts"].endswith("Z") and "\n" not in line


def test_exceptions_are_one_line_with_the_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    entry = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in entry["exc_info"] and "Traceback" in entry["exc_info"]


def test_configure_logging_replaces_its_own_handler():
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        configure_logging("WARNING", json_lines=True)
        configure_logging("INFO", json_lines=False)
        ours = [h for h in root.handlers if getattr(h, "_neumeta", False)]
        assert len(ours) == 1 and not isinstance(ours[0].formatter, JsonFormatter)
        assert root.level == logging.INFO
    finally:
        root.handlers[:] = before
        root.setLevel(level)
