"""The client installs alone (httpx + filelock, no torch, no onnxruntime) and its CLIs pull and list a model."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT_SRC = Path(__file__).resolve().parents[2] / "clients" / "python"


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NEUMETA_OFFLINE")}
    return subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True, env=env, timeout=600,
                          **kwargs)


@pytest.mark.slow
def test_client_alone_in_a_fresh_venv_pulls_with_its_cli(live_service, tmp_path):
    venv = tmp_path / "venv"
    result = _run(sys.executable, "-m", "venv", venv)
    assert result.returncode == 0, result.stderr
    source = tmp_path / "src"  # build from a copy: no build/ or egg-info in the shared tree
    shutil.copytree(CLIENT_SRC, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))

    result = _run(venv / "bin" / "pip", "install", "--no-input", source)  # pip's default config: local mirror
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    python = venv / "bin" / "python"
    for module in ("torch", "onnxruntime"):
        probe = _run(python, "-c", f"import {module}")
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"{module} is installed"

    out = tmp_path / "model.onnx"
    pull = _run(venv / "bin" / "neumeta-pull", "--server", live_service, "--arch", "resnet20", "--width", "8",
                "--cache-dir", tmp_path / "cache", "-o", out)
    assert pull.returncode == 0, pull.stderr
    assert pull.stdout.strip() == str(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert (tmp_path / "cache" / "blobs" / digest).is_file()
    assert f"sha256={digest[:12]}" in pull.stderr
    scan = _run(venv / "bin" / "neumeta-cache", "--cache-dir", tmp_path / "cache", "scan")
    assert scan.returncode == 0 and "1 models; 0 orphaned blobs" in scan.stdout, scan.stderr

    session = _run(python, "-c", "import neumeta_client as nc; nc.Client('http://x').session('resnet20', 8)")
    assert "MissingExtra" in session.stderr and "neumeta-client[onnx]" in session.stderr
