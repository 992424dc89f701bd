"""``neumeta serve`` and its settings: the command line, deploy/env.example, a real process."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.serving.server import _overrides, register
from service.settings import Settings
from tests.fixtures.redis import free_port
from tests.waiting import wait_until_answering

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / "deploy" / "env.example"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="neumeta")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_env_example_names_exactly_the_settings_fields():
    names = re.findall(r"^#?\s*NEUMETA_([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    assert len(names) == len(set(names))
    assert {n.lower() for n in names} == set(Settings.model_fields)


def test_env_example_values_are_the_defaults(monkeypatch):
    for key in [k for k in os.environ if k.startswith("NEUMETA_")]:
        monkeypatch.delenv(key)
    assert Settings(_env_file=ENV_EXAMPLE).model_dump() == Settings().model_dump()


def test_serve_flags_become_settings(tiny_ckpt_path):
    args = parse(["serve", "--host", "0.0.0.0", "--port", "9001", "--workers", "3",
                  "--checkpoint", str(tiny_ckpt_path), "--checkpoint", str(tiny_ckpt_path)])
    env = _overrides(args)
    assert env == {"NEUMETA_HOST": "0.0.0.0", "NEUMETA_PORT": "9001", "NEUMETA_WORKERS": "3",
                   "NEUMETA_CHECKPOINTS": f"{tiny_ckpt_path},{tiny_ckpt_path}"}
    assert args.func.__name__ == "serve"


@pytest.mark.slow
def test_serve_runs_a_real_server_and_logs_json(tiny_ckpt_path, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUMETA_")}
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.serving.server", "--port", str(port), "--checkpoint", str(tiny_ckpt_path)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_answering(proc, f"http://127.0.0.1:{port}/readyz", tmp_path / "serve.log")
        r = httpx.get(f"http://127.0.0.1:{port}/model", params={"arch": "resnet20", "width": 8},
                      headers={"X-Request-ID": "serve-test-1"}, timeout=60)
        assert r.status_code == 200 and r.headers["x-cache"] == "miss"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    lines = [line for line in (tmp_path / "serve.log").read_text().splitlines() if "serve-test-1" in line]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["status"] == 200 and entry["path"] == "/model" and entry["cache"] == "miss"
    assert entry["duration_ms"] > 0 and entry["logger"] == "neumeta.access"


def test_serve_refuses_a_missing_checkpoint(tmp_path):
    missing = str(tmp_path / "none.safetensors")
    r = subprocess.run([sys.executable, "-m", "service.serving.server", "--checkpoint", missing],
                       check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid settings" in r.stderr and "does not exist" in r.stderr
